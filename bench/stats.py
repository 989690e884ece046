"""Percentiles, one workload's summary (jobs/s, p50/p95/p99 in ms), and the /proc readings every bench
module takes the same way (a process tree's CPU time and memory, the CPU model)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

# Any: a workload's summary, a row of the report and the results file are JSON objects (numbers,
# strings, lists and nested objects, different per workload), written out as they are.
Json = dict[str, Any]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its children so far; 0 once it is gone."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children (prefork pools, BentoML's workers), in MB (10^6 bytes)."""
    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return round(total / 1e6, 1)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none: not Linux, or an ARM board)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks (numpy's default method)."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(
    latencies_s: Sequence[float], elapsed_s: float, *, items: int | None = None, errors: int = 0, **extra: object
) -> Json:
    """``items`` finished in ``elapsed_s`` (default: one per latency); latencies in seconds → ms."""
    done = len(latencies_s) if items is None else items
    ms = [x * 1000 for x in latencies_s]
    return {
        "count": done,
        "errors": errors,
        "elapsed_s": round(elapsed_s, 3),
        "rate": round(done / elapsed_s, 1) if elapsed_s > 0 else math.nan,
        "p50_ms": _round(percentile(ms, 50)),
        "p95_ms": _round(percentile(ms, 95)),
        "p99_ms": _round(percentile(ms, 99)),
        **extra,
    }


def _round(x: float) -> float:
    return x if math.isnan(x) else round(x, 3 if x < 10 else 1)
