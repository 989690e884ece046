"""The machine a run measured on: what it is (CPU, memory, library versions, written into the results
so two runs can be compared) and whether it is quiet enough to start (``--wait-quiet-s``)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import time

import psutil

from bench.stats import cpu_model

# The libraries whose version moves the numbers.
VERSIONED = (
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "scikit-learn",
    "numpy",
    "celery",
    "kombu",
    "redis",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "pillow",
)


def machine_info() -> dict[str, object]:
    versions = {}
    for dist in VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def wait_for_quiet(max_s: float, busy_below: float = 15.0) -> float:
    """Wait (at most ``max_s``) until the machine's CPUs are under ``busy_below`` percent busy over
    two 2-second samples in a row; returns the last sample."""
    deadline = time.monotonic() + max_s
    quiet = 0
    busy = psutil.cpu_percent(interval=2)
    while time.monotonic() < deadline:
        quiet = quiet + 1 if busy < busy_below else 0
        if quiet >= 2:
            break
        busy = psutil.cpu_percent(interval=2)
    return busy
