"""``make bench``: mlqueue against the raw model, a tutorial FastAPI + Celery service and BentoML.

``python -m bench.run [--quick] [--only iris,image,...] [--client-procs 2] [--out bench/results/latest.json]``

In one run on this machine it measures, side by side:
  (a) raw: the shipped models called in-process, as the worker calls them (``bench.raw``); for
      images also from PNG bytes (decode + resize + predict, batches of 32): the image target's base;
  (b) mlqueue end to end through HTTP: a private Redis + one worker + the API (``devtools.processes``);
      the 100k-row batch on a stack of its own with two workers (one per core, one thread each);
      the result cache on a third stack (cache on only there); fairness and priority between two
      API keys, one flooding (``bench.fairness``), on a fourth;
  (c) naive: the tutorial pattern (``bench.naive``) on a Redis of its own;
  (d) BentoML with adaptive batching, in its own virtualenv (skipped with a note if unavailable);
then prints a table, the targets (PASS/MISS and by how much), and writes everything as JSON.
Each system runs alone, so the 2 cores are never shared between systems. Every job of every
throughput workload has an input no other job of that system's run had (``bench.data.Pool``: warm-ups
included), so the result cache could answer none of them; the systems get the same inputs. Only the
cache workload repeats one row, on purpose. Closed loops with more than one request in flight run on
``--client-procs`` load-generator processes (``bench.clients``); one at a time runs in this process.
``--profile DIR`` samples the API and the worker with py-spy during the iris c=64, image and batch
workloads, and the API during cache hits (``bench.profile``; a profiled run's numbers are lower).
The load generator is ``bench.http`` (``--client httpx`` to compare: httpx costs ~1-5 ms of client
CPU per request here).

How to read the output. ``jobs/s`` is finished jobs per second of the timed phase (batch: rows/s).
``srv CPU ms/job`` is the CPU time the system under test spent per finished job over the timed phase
only, read from /proc: mlqueue's API + worker(s) + Redis, naive's API + Celery worker (with its
prefork children) + Redis, BentoML's whole process tree; on a shared 2-core machine it is steadier
than jobs/s, which a busy neighbour lowers. ``client ms/job,max%`` is the load generator's own CPU
per job and the busiest client process's share of one core: near 100% the client, not the server,
was the limit (a note says so). ``API MB`` is the API's RSS sampled right after that workload (the
target takes the highest). p50/p95/p99 are per-request latencies seen by the client. Below the
table: CPU ms per job by process and where an mlqueue job's time went (api_in, queue, run, back),
then each target with the value, its bound and, if missed, by how much. The notes list anything
that makes a number less trustworthy (other processes busy, a skipped system, errors).

This module is the command line and the order the systems run in; the pieces: ``bench.workloads``
(families, names, sizes), ``bench.session`` (inputs, record, driver), ``bench.systems`` (starting
and stopping them), ``bench.meter`` (CPU and memory), ``bench.drive`` (one timed workload),
``bench.mlqueue_runs`` and ``bench.baseline_runs`` (what runs on each), ``bench.targets`` and
``bench.report``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import baseline_runs, load, mlqueue_runs, workloads
from bench.console import say
from bench.machine import machine_info, wait_for_quiet
from bench.report import render
from bench.session import Session
from bench.stats import Json
from bench.targets import evaluate, target_values
from shared.settings import REPO_ROOT


async def run_families(s: Session, args: argparse.Namespace) -> None:
    """Each system alone, in this order; a family runs where it was asked for (``--only``)."""
    only = s.only
    if only & {"image", "idle"} and not s.has_image:
        say(f"waiting up to {args.wait_model_s:.0f}s for models/digits/1/manifest.json")
        s.wait_for_image_model(args.wait_model_s)
    if only & {"raw", "idle", "image"}:
        baseline_runs.run_raw(s)
    if only & {"idle", "iris", "image"}:
        await mlqueue_runs.run_mlqueue(s)
    if "batch" in only:
        await mlqueue_runs.run_batch(s)
    if "cache" in only:
        await mlqueue_runs.run_cache(s)
    if "fairness" in only:
        await mlqueue_runs.run_fairness(s)
    if only & {"iris", "image"} and not args.no_naive:
        await baseline_runs.run_naive(s)
    if "image" in only and s.has_image and not args.no_bentoml:
        await baseline_runs.run_bentoml(s, allow_install=not args.quick)


async def run(args: argparse.Namespace) -> Json:
    sizes = workloads.QUICK if args.quick else workloads.Sizes()
    only = workloads.parse_only(args.only)
    if args.wait_quiet_s:
        say(f"waiting up to {args.wait_quiet_s:.0f}s for the CPUs to be idle")
        say(f"CPUs {wait_for_quiet(args.wait_quiet_s):.0f}% busy")
    started = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    busy_at_start = psutil.cpu_percent(interval=1)
    if busy_at_start > 15:
        say(f"warning: the CPUs are {busy_at_start:.0f}% busy before the run (--wait-quiet-s waits for idle CPUs)")
    with tempfile.TemporaryDirectory(prefix="mlqueue-bench-") as tmp:
        session = Session(sizes, only, Path(tmp), args.profile, args.client, args.client_procs)
        await run_families(session, args)
        record = session.record
        results = {
            "quick": args.quick,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": None,
            "machine": {**machine_info(), "loadavg_at_start": load_at_start, "cpu_busy_pct_at_start": busy_at_start},
            "sizes": dataclasses.asdict(sizes),
            "client": args.client,
            "client_procs": args.client_procs,
            "rows": record.rows,
            "targets": evaluate(target_values(record.rows, record.extra)),
            "notes": record.notes,
            "profiles": record.profiles,
            **record.extra,
        }
    results["duration_s"] = round(time.monotonic() - started, 1)
    return results


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="mlqueue benchmark: mlqueue against raw, naive and BentoML")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run in a few minutes")
    parser.add_argument("--only", help=f"comma-separated workloads among {', '.join(workloads.FAMILIES)}")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--no-bentoml", action="store_true")
    parser.add_argument(
        "--client", choices=sorted(load.CLIENTS), default="raw", help="HTTP client of the load generator"
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="load-generator processes sharing a closed loop's concurrency (1: all in this process)",
    )
    parser.add_argument("--profile", type=Path, help="write py-spy profiles (iris c=64, image) into this folder")
    parser.add_argument("--wait-quiet-s", type=float, default=0, help="first wait up to this long for idle CPUs")
    parser.add_argument("--wait-model-s", type=float, default=1200, help="how long to wait for the image model")
    args = parser.parse_args(argv)
    try:
        import uvloop  # the API's event loop too (requirements/api.txt): a cheaper client

        results = uvloop.run(run(args))
    except ImportError:
        results = asyncio.run(run(args))
    print(render(results), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten to {args.out} ({results['duration_s']} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
