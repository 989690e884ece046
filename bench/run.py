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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import clients, fairness, load
from bench.data import Pool, digit_pngs, iris_rows
from bench.profile import Profiler
from bench.stats import cpu_model, tree_cpu_s, tree_rss_mb
from bench.targets import evaluate
from devtools.processes import Stack, make_stack, stop_group, wait_http
from devtools.redis_server import RedisServer, free_port
from shared.settings import REPO_ROOT

FAMILIES = ("raw", "idle", "iris", "image", "batch", "cache", "fairness")
# Workload names the targets look up (target_values).
FLOOR = "GET /healthz c=1 (HTTP floor)"
IDLE = "idle single iris"
IRIS64 = "iris c=64"
IMAGE = "image c=32"
CACHE = "cache hit (same row)"
RAW_IMAGE = "image batch of 32, PNG decode incl."
BENTOML_VENV = Path(os.environ.get("BENCH_BENTOML_VENV", "/tmp/bentoml-venv"))
# The product's defaults where devtools.processes sets test-friendly ones; the cache is on only for
# the cache workload (a stack of its own), so every other job reaches a worker.
STACK_SETTINGS = {
    "log_level": "WARNING",
    "rate_limit": "1000000000/minute",
    "batch_rate_limit": "1000000000/minute",
    "worker_concurrency": "16",
    "worker_threads": "0",
    "heartbeat_interval_s": "5",
    "cache_ttl_s": "0",
}


@dataclass(frozen=True)
class Sizes:
    raw_s: float = 3.0
    idle: int = 300
    iris_c1: int = 2_000
    iris_c64: int = 6_000
    images: int = 500
    batch_rows: int = 100_000
    cache: int = 1_000
    max_s: float = 20.0  # per timed workload
    naive_image_max_s: float = 45.0
    fairness_sizes: fairness.FairnessSizes = fairness.FULL


QUICK = Sizes(
    raw_s=1.0,
    idle=40,
    iris_c1=150,
    iris_c64=600,
    images=96,
    batch_rows=10_000,
    cache=100,
    max_s=8.0,
    naive_image_max_s=15.0,
    fairness_sizes=fairness.QUICK,
)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- machine, processes, CPU accounting ---------------------------------------------------------


def machine_info() -> dict[str, Any]:
    versions = {}
    for dist in (
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
    ):
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


class PeakRss:
    """The highest RSS of each named process tree while it runs, sampled every 20 ms in a thread
    (the 100k-row batch: does the API or a worker ever hold the whole batch at once?)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_mb = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for name, pid in self.pids.items():
                with contextlib.suppress(psutil.Error):
                    self.peak_mb[name] = max(self.peak_mb[name], tree_rss_mb(pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class CpuMeter:
    """CPU seconds used by each named process tree of the system under test (``server``) between
    ``start`` and ``stop``, by the load generator (``client``: this process plus what its client
    processes report), by measuring tools (``tools``: py-spy, counted apart) and by everything else
    on the machine (``other``: a busy neighbour makes the numbers unreliable). Read from /proc."""

    def __init__(self, server: dict[str, int], tools: dict[str, int] | None = None) -> None:
        self.server = dict(server)
        self.tools = dict(tools or {})
        self.pids = {**self.server, **self.tools}
        self.before: dict[str, float] = {}

    def with_tools(self, tools: dict[str, int]) -> CpuMeter:
        return CpuMeter(self.server, tools)

    def _read(self) -> dict[str, float]:
        out = {"client": time.process_time()}
        for name, pid in self.pids.items():
            out[name] = tree_cpu_s(pid)
        machine = psutil.cpu_times()
        out["machine"] = machine.user + machine.nice + machine.system + getattr(machine, "softirq", 0)
        out["steal"] = getattr(machine, "steal", 0.0)  # a hypervisor taking the vCPUs away
        return out

    def start(self) -> None:
        self.before = self._read()

    def stop(self, client_children_s: float = 0.0) -> dict[str, float]:
        """``client_children_s``: the CPU the load-generator processes reported for the same span."""
        after = self._read()
        used = {k: max(0.0, after[k] - self.before.get(k, 0.0)) for k in after}
        used["client"] += client_children_s
        machine = used.pop("machine")
        steal = used.pop("steal")
        used["other"] = max(0.0, machine - sum(used.values()))
        used["steal"] = steal
        return {k: round(v, 3) for k, v in used.items()}


def cpu_ms_per_job(cpu: dict[str, float], count: int, server: list[str] | tuple[str, ...]) -> dict[str, float]:
    """CPU milliseconds per finished job: each process, ``server`` (the system under test's
    processes summed: API + worker(s) + Redis, or BentoML's tree) and ``client``. Not ``other``
    (neighbours) nor ``steal``. Errors are not jobs: a failing system does not look cheap."""
    if count <= 0:
        return {}
    per = {k: round(v * 1000 / count, 3) for k, v in cpu.items() if k not in ("other", "steal")}
    per["server"] = round(sum(cpu.get(k, 0.0) for k in server) * 1000 / count, 3)
    return per


# --- the systems --------------------------------------------------------------------------------


@contextlib.contextmanager
def mlqueue_stack(tmp: Path, workers: int = 1, **overrides: str) -> Iterator[Stack]:
    """Redis + ``workers`` worker processes (``worker``, ``worker2``, ...) + the API, every worker live."""
    stack = make_stack(tmp, **{**STACK_SETTINGS, **overrides})
    try:
        for k in range(workers):
            stack.start_worker("worker" if k == 0 else f"worker{k + 1}")
        stack.start_api()
        stack.wait_ready(timeout_s=180)
        if workers > 1:  # ready means one live worker per model: wait until all of them have loaded it
            stack.wait_for(lambda: live_workers(stack.api_url) >= workers, timeout_s=180)
        yield stack
    finally:
        stack.stop_all()


def live_workers(api_url: str, model: str = "iris") -> int:
    """How many live workers have ``model`` loaded (``GET /v1/models/{model}``: ``loaded_on``)."""
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError):
        versions = httpx.get(f"{api_url}/v1/models/{model}", timeout=2).json()["versions"]
        return len(versions[0]["loaded_on"])
    return 0


def stack_pids(stack: Stack) -> dict[str, int]:
    """The processes whose CPU is the server's: API, every worker, Redis."""
    return {name: proc.pid for name, proc in stack.procs.items()} | {"redis": stack.redis.process.pid}


@contextlib.contextmanager
def naive_service(tmp: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """Redis, the tutorial's prefork Celery worker and its uvicorn front end (1 worker)."""
    redis = RedisServer(data_dir=tmp / "naive-redis").start()
    env = {**os.environ, "NAIVE_REDIS_URL": redis.url, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    port = free_port()
    procs: dict[str, subprocess.Popen] = {}
    try:
        with open(tmp / "naive-worker.log", "ab") as log:
            procs["worker"] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "bench.naive.tasks",
                    "worker",
                    "--loglevel=WARNING",
                    "--without-mingle",
                    "--without-gossip",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with open(tmp / "naive-api.log", "ab") as log:
            procs["api"] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.naive.app:app",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/docs", procs, 60)
        yield url, {"api": procs["api"].pid, "worker": procs["worker"].pid, "redis": redis.process.pid}
    finally:
        for proc in procs.values():
            stop_group(proc)
        redis.stop()


def bentoml_ready(notes: list[str], allow_install: bool) -> Path | None:
    """The BentoML virtualenv's ``bentoml`` (bentoml + tensorflow-cpu + keras as pinned here),
    created if missing and ``allow_install``; None with a note when it cannot be had quickly."""
    exe = BENTOML_VENV / "bin" / "bentoml"
    py = BENTOML_VENV / "bin" / "python"
    check = [str(py), "-c", "import bentoml, tensorflow, keras, PIL"]
    if py.exists() and subprocess.run(check, capture_output=True, timeout=120).returncode == 0:
        return exe
    if not allow_install:
        notes.append(f"BentoML skipped: no usable virtualenv at {BENTOML_VENV} (run without --quick to create it)")
        return None
    pins = [f"{d}=={importlib.metadata.version(d)}" for d in ("tensorflow-cpu", "keras")]
    say(f"creating {BENTOML_VENV} (bentoml, {', '.join(pins)}): up to 5 minutes")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(BENTOML_VENV)], check=True, timeout=120)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "bentoml", *pins, "pillow"],
            check=True,
            timeout=300,
            capture_output=True,
        )
        subprocess.run(check, check=True, capture_output=True, timeout=120)
        return exe
    except (subprocess.SubprocessError, OSError, importlib.metadata.PackageNotFoundError) as exc:
        notes.append(f"BentoML skipped: could not install it into {BENTOML_VENV}: {str(exc)[:200]}")
        return None


@contextlib.contextmanager
def bentoml_service(tmp: Path, exe: Path, model: Path) -> Iterator[tuple[str, dict[str, int]]]:
    port = free_port()
    env = {
        **os.environ,
        "DIGITS_MODEL": str(model),
        "BENTOML_HOME": str(tmp / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": "",
    }
    with open(tmp / "bentoml.log", "ab") as log:
        proc = subprocess.Popen(
            [str(exe), "serve", "service:Digits", "--port", str(port), "--host", "127.0.0.1"],
            cwd=REPO_ROOT / "bench" / "bento",
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", {"bentoml": proc}, 180)
        yield url, {"bentoml": proc.pid}
    finally:
        stop_group(proc)


# --- the run ------------------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        sizes: Sizes,
        only: set[str],
        tmp: Path,
        profile_dir: Path | None,
        client_kind: str,
        client_procs: int = 2,
    ) -> None:
        self.sizes = sizes
        self.client_kind = client_kind
        self.client_procs = client_procs
        self.only = only
        self.tmp = tmp
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        self.profiler = Profiler(profile_dir)
        self.profiles: dict[str, Any] = {}
        self.api_pid: int | None = None  # the live mlqueue API: its RSS is sampled after every workload
        say("generating inputs (pairwise distinct)")
        s = sizes
        # Per system: every warm-up and timed job of a stack takes its own slice (bench.data.Pool).
        iris_n = 20 + s.idle + 2 + s.iris_c1 + 64 + s.iris_c64 + 100
        png_n = 10 + min(s.idle, 200) + 64 + s.images + 16
        self.iris = Pool(iris_rows(iris_n, seed=3), "iris rows")
        self.batch = Pool(iris_rows(s.batch_rows + 2_000, seed=4), "batch rows")
        self.pngs = Pool(digit_pngs(png_n, seed=5), "digit PNGs")
        self.has_image = (REPO_ROOT / "models" / "digits" / "1" / "manifest.json").exists()

    def wants(self, family: str) -> bool:
        return family in self.only

    def add(
        self,
        workload: str,
        system: str,
        result: dict[str, Any],
        cpu: dict[str, float] | None = None,
        timeline: load.Timeline | None = None,
        server: list[str] | tuple[str, ...] = (),
    ) -> None:
        row = {"workload": workload, "system": system, **result}
        if cpu is not None:
            row["cpu_s"] = cpu
            if row.get("count"):
                row["cpu_ms_per_job"] = cpu_ms_per_job(cpu, row["count"], server)
        if timeline is not None and timeline.samples:
            row["breakdown_ms"] = timeline.summary()
        if system.startswith("mlqueue") and self.api_pid is not None:
            with contextlib.suppress(psutil.Error):
                row["api_rss_mb"] = tree_rss_mb(self.api_pid)
                self.extra["api_rss_max_mb"] = max(self.extra.get("api_rss_max_mb", 0.0), row["api_rss_mb"])
        self.rows.append(row)
        rate, p50, p99 = row.get("rate"), row.get("p50_ms"), row.get("p99_ms")
        err = f", {row['errors']} errors" if row.get("errors") else ""
        srv = (row.get("cpu_ms_per_job") or {}).get("server")
        srv_text = f"  server {srv:.2f} CPU-ms/job" if srv is not None and server else ""
        latency = f"  p50 {p50} ms  p99 {p99} ms" if p50 is not None else ""
        say(f"  {workload:<24} {system:<18} {rate:>10,.1f}/s{latency}{srv_text}{err}")
        if cpu and cpu.get("other", 0) > 0.1 * max(row.get("elapsed_s") or 0, 1e-9) * (os.cpu_count() or 1):
            note = f"{workload} / {system}: other processes used {cpu['other']} CPU-s during it (a busy machine)"
            self.notes.append(note)
            say(f"    warning: {note}")
        if row.get("client_busiest_pct", 0) > 80:
            note = (
                f"{workload} / {system}: a load-generator process was {row['client_busiest_pct']}% busy: "
                "the client may be the bottleneck (raise --client-procs)"
            )
            self.notes.append(note)
            say(f"    warning: {note}")
        if "breakdown_ms" in row:
            parts = ", ".join(f"{k} {v['p50_ms']}" for k, v in row["breakdown_ms"].items())
            say(f"    p50 breakdown (ms): {parts}")

    async def measure(
        self,
        workload: str,
        system: str,
        url: str,
        http: load.HttpClient,
        spec_for: Callable[[int], load.Spec],
        n: int,
        concurrency: int,
        max_s: float,
        meter: CpuMeter,
        profile: dict[str, int] | None = None,
        timeline: bool = False,
    ) -> dict[str, Any]:
        """Warm up (untimed, inputs of its own), then the timed closed loop, with CPU accounting
        (and a profile); over ``client_procs`` processes when more than one request is in flight."""
        warm = min(2 * concurrency, 64)
        await load.closed_loop(load.make_call(http, spec_for(warm)), warm, concurrency, 30)
        spec = spec_for(n)
        if profile:
            self.profiler.start(workload.replace(" ", "_").replace("=", ""), profile, max_s)
            meter = meter.with_tools(self.profiler.pids())
        tl = load.Timeline() if timeline else None
        try:
            if self.client_procs > 1 and concurrency > 1:
                result, samples = await asyncio.to_thread(
                    clients.closed_loop,
                    url,
                    spec,
                    n,
                    concurrency,
                    max_s,
                    self.client_procs,
                    self.client_kind,
                    timeline,
                    meter.start,
                )
                cpu = meter.stop(client_children_s=result["client_cpu_s"])
                if tl is not None:
                    tl.samples.extend(samples)
            else:
                call = load.make_call(http, spec, tl)
                meter.start()
                result = await load.closed_loop(call, n, concurrency, max_s)
                cpu = meter.stop()
        finally:
            if profile:
                self.profiles.update(self.profiler.stop())
        self.add(workload, system, result, cpu, tl, list(meter.server))
        return result

    async def sequential(
        self,
        workload: str,
        system: str,
        http: load.HttpClient,
        spec_for: Callable[[int], load.Spec],
        n: int,
        warm: int,
        gap_s: float,
        meter: CpuMeter,
        timeline: bool = False,
    ) -> None:
        """One request at a time (``gap_s`` apart: each finds the stack idle), after ``warm`` untimed."""
        await load.sequential(load.make_call(http, spec_for(warm)), warm, gap_s, 10)
        tl = load.Timeline() if timeline else None
        call = load.make_call(http, spec_for(n), tl)
        meter.start()
        result = await load.sequential(call, n, gap_s, self.sizes.max_s)
        self.add(workload, system, result, meter.stop(), tl, list(meter.server))

    # (a)
    def run_raw(self) -> None:
        say("(a) raw in-process: loading the model repository like a worker")
        out = self.tmp / "raw.json"
        cmd = [sys.executable, "-m", "bench.raw", "--seconds", str(self.sizes.raw_s), "--out", str(out)]
        if not self.has_image:
            cmd.append("--no-image")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MLQUEUE_LOG_LEVEL": "WARNING"}
        subprocess.run(
            cmd, cwd=REPO_ROOT, env=env, check=True, timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        raw = json.loads(out.read_text())
        self.extra["raw"] = raw
        labels = {
            "iris_x1": "iris x1 (predict_batch of 1)",
            "iris_b64": "iris batch of 64",
            "digits_x1": "image x1 (predict_batch of 1)",
            "digits_b32": "image batch of 32",
            "digits_b32_decoded": RAW_IMAGE,
            "digits_keras_predict_x1": "image Keras model.predict x1",
            "png_decode": "PNG decode+resize (API side)",
        }
        for key, label in labels.items():
            if key in raw:
                self.add(label, "raw in-process", raw[key])

    # (b)
    async def run_mlqueue(self) -> None:
        s = self.sizes
        say("(b) mlqueue: Redis + worker + API (cache off)")
        iris, pngs = self.iris.fresh(), self.pngs.fresh()
        with mlqueue_stack(self.tmp / "mlqueue") as stack:
            pids = stack_pids(stack)
            self.api_pid = pids["api"]
            url = stack.api_url
            meter = CpuMeter(pids)
            profiled = {"api": pids["api"], "worker": pids["worker"]}  # py-spy reads Python processes only
            self.extra["mlqueue_settings"] = {k: v for k, v in stack.env.items() if k.startswith("MLQUEUE_")}
            async with load.client(url, 64, self.client_kind) as http:
                if self.wants("idle"):
                    # The HTTP floor: the API answering a no-op through the same client, one at a time.
                    await self.sequential(
                        FLOOR, "mlqueue API", http, lambda n: load.get("/healthz"), s.idle, 20, 0.02, meter
                    )
                if self.wants("idle"):
                    json_spec = lambda n: load.mlqueue_json("iris", iris.take(n), wait_s=10)  # noqa: E731
                    await self.sequential(IDLE, "mlqueue", http, json_spec, s.idle, 20, 0.02, meter, timeline=True)
                    if self.has_image:
                        image_spec = lambda n: load.mlqueue_image("digits", pngs.take(n), wait_s=10)  # noqa: E731
                        n_img = min(s.idle, 200)
                        await self.sequential(
                            "idle single image", "mlqueue", http, image_spec, n_img, 10, 0.02, meter, timeline=True
                        )
                if self.wants("iris"):
                    get = lambda n: load.get("/healthz")  # noqa: E731
                    await self.measure("GET /healthz c=64", "mlqueue API", url, http, get, 4 * s.iris_c64, 64, 5, meter)
                    json_spec = lambda n: load.mlqueue_json("iris", iris.take(n), wait_s=10)  # noqa: E731
                    await self.measure("iris c=1", "mlqueue", url, http, json_spec, s.iris_c1, 1, s.max_s, meter)
                    await self.measure(
                        IRIS64, "mlqueue", url, http, json_spec, s.iris_c64, 64, s.max_s, meter, profiled, True
                    )
                if self.wants("image") and self.has_image:
                    image_spec = lambda n: load.mlqueue_image("digits", pngs.take(n), wait_s=30)  # noqa: E731
                    await self.measure(
                        IMAGE, "mlqueue", url, http, image_spec, s.images, 32, 3 * s.max_s, meter, profiled, True
                    )
            self.extra["rss_mb"] = {"api": tree_rss_mb(pids["api"]), "worker": tree_rss_mb(pids["worker"])}
            self.extra["readyz"] = httpx.get(f"{url}/readyz", timeout=5).json()
            rss = self.extra["rss_mb"]
            say(f"  RSS after the workloads: API {rss['api']} MB, worker {rss['worker']} MB")
            self.api_pid = None

    async def run_batch(self) -> None:
        """The 100k-row batch on a stack of its own: two worker processes, one per core, each with one
        BLAS/TF thread (MLQUEUE_WORKER_THREADS=1), so the chunks run on both cores."""
        say("(b) mlqueue batch: Redis + 2 workers (MLQUEUE_WORKER_THREADS=1 each) + API")
        rows = self.batch.fresh()
        with mlqueue_stack(self.tmp / "mlqueue-batch", workers=2, worker_threads="1") as stack:
            pids = stack_pids(stack)
            self.api_pid = pids["api"]
            profile = {"api": pids["api"], "worker": pids["worker"]}
            async with load.client(stack.api_url, 2, self.client_kind) as http:
                await load.mlqueue_batch(http, "iris", rows.take(2_000), 60)  # warm-up
                batch = rows.take(self.sizes.batch_rows)
                self.profiler.start("batch", profile, 60)
                meter = CpuMeter(pids, self.profiler.pids())
                watched = {name: pid for name, pid in pids.items() if name != "redis"}
                before_mb = {name: tree_rss_mb(pid) for name, pid in watched.items()}
                meter.start()
                try:
                    with PeakRss(watched) as rss:
                        result = await load.mlqueue_batch(http, "iris", batch, 180)
                except load.Failed as exc:
                    self.notes.append(f"batch failed: {exc}")
                    self.api_pid = None
                    return
                finally:
                    self.profiles.update(self.profiler.stop())
                cpu = meter.stop()
            memory = {"rss_before_mb": before_mb, "rss_peak_mb": rss.peak_mb}
            self.extra["batch"] = {**result, "cpu_s": cpu, **memory}
            if result["succeeded_lines"] != len(batch):
                self.notes.append(f"batch: {result['succeeded_lines']} of {len(batch)} result lines succeeded")
            self.add(
                f"batch {len(batch):,} rows (2 workers)",
                "mlqueue",
                {
                    "rate": result["rate"],
                    "p50_ms": None,
                    "p95_ms": None,
                    "p99_ms": None,
                    "count": len(batch),
                    "errors": len(batch) - result["succeeded_lines"],
                    "elapsed_s": result["elapsed_s"],
                    "client_cpu_s": result["client_cpu_s"],
                },
                cpu,
                server=list(meter.server),
            )
            self.api_pid = None
        say(f"    submit {result['submit_s']} s, run {result['run_s']} s, stream {result['stream_s']} s")
        peaks = ", ".join(f"{k} {before_mb[k]} -> {rss.peak_mb[k]} MB" for k in watched)
        say(f"    RSS before -> peak: {peaks} (request body {result['body_mb']} MB)")

    async def run_cache(self) -> None:
        say("(b) mlqueue with the result cache on (MLQUEUE_CACHE_TTL_S=3600)")
        with mlqueue_stack(self.tmp / "mlqueue-cache", cache_ttl_s="3600") as stack:
            pids = stack_pids(stack)
            self.api_pid = pids["api"]
            async with load.client(stack.api_url, 1, self.client_kind) as http:
                if not any(r["workload"] == FLOOR for r in self.rows):  # the cache target compares with it
                    get = lambda n: load.get("/healthz")  # noqa: E731
                    await self.sequential(FLOOR, "mlqueue API", http, get, self.sizes.idle, 20, 0.02, CpuMeter(pids))
                # The one workload where repeats are the point: one row, asked again and again.
                row = self.iris.fresh().take(1)
                await load.sequential(load.make_call(http, load.mlqueue_json("iris", row, wait_s=5)), 1, 0, 10)
                spec = load.mlqueue_json("iris", row, wait_s=5, expect_cached=True, cycle=True)
                call = load.make_call(http, spec)
                await load.sequential(call, 20, 0, 10)
                self.profiler.start("cache", {"api": pids["api"]}, self.sizes.max_s)
                meter = CpuMeter(pids, self.profiler.pids())
                meter.start()
                result = await load.sequential(call, self.sizes.cache, 0.0, self.sizes.max_s)
                cpu = meter.stop()
                self.profiles.update(self.profiler.stop())
                self.add(CACHE, "mlqueue", result, cpu, server=list(meter.server))
            self.api_pid = None

    async def run_fairness(self) -> None:
        """Fairness and priority: keys A and B (weight 1) on a stack of their own; ``bench.fairness`` drives it."""
        say("(b) mlqueue fairness: keys A and B; B alone, B while A floods, A's high job over its low batch")
        tokens, keys = fairness.make_keys()
        sizes = self.sizes.fairness_sizes
        overrides = {"api_keys": keys, "batch_chunk_rows": str(sizes.chunk_rows)}
        with mlqueue_stack(self.tmp / "mlqueue-fairness", **overrides) as stack:
            pids = stack_pids(stack)
            self.api_pid = pids["api"]
            meter = CpuMeter(pids)
            result = await fairness.run(stack.api_url, tokens, sizes, meter)
            cpu = result["idle"].pop("cpu_s", None)
            self.add("fairness: key B alone", "mlqueue", result["idle"], cpu, server=list(meter.server))
            self.add("fairness: key B, key A flooding", "mlqueue", result["flood"])
            self.api_pid = None
        self.extra["fairness"] = result
        for line in fairness.report_lines(result)[3:]:
            say(line)

    # (c)
    async def run_naive(self) -> None:
        s = self.sizes
        say("(c) naive: FastAPI + task.delay() + AsyncResult polling, prefork Celery worker")
        iris, pngs = self.iris.fresh(), self.pngs.fresh()
        with naive_service(self.tmp) as (url, pids):
            meter = CpuMeter(pids)
            async with load.client(url, 64, self.client_kind) as http:
                await load.closed_loop(load.make_call(http, load.naive_iris(iris.take(4))), 4, 1, 60)  # worker up
                if self.wants("iris"):
                    spec = lambda n: load.naive_iris(iris.take(n))  # noqa: E731
                    await self.measure("iris c=1", "naive", url, http, spec, min(s.iris_c1, 400), 1, s.max_s, meter)
                    await self.measure(IRIS64, "naive", url, http, spec, s.iris_c64, 64, s.max_s, meter)
                if self.wants("image") and self.has_image:
                    # each prefork child loads Keras on its first task
                    await load.closed_loop(load.make_call(http, load.naive_image(pngs.take(8))), 8, 8, 120)
                    spec = lambda n: load.naive_image(pngs.take(n))  # noqa: E731
                    await self.measure(IMAGE, "naive", url, http, spec, s.images, 32, s.naive_image_max_s, meter)
            self.extra["naive_rss_mb"] = {"api": tree_rss_mb(pids["api"]), "worker": tree_rss_mb(pids["worker"])}

    # (d)
    async def run_bentoml(self, allow_install: bool) -> None:
        exe = bentoml_ready(self.notes, allow_install)
        if exe is None:
            say(self.notes[-1])
            return
        say("(d) BentoML: adaptive batching (max 32), Keras model.predict per batch")
        pngs = self.pngs.fresh()
        try:
            with bentoml_service(self.tmp, exe, REPO_ROOT / "models" / "digits" / "1" / "model.keras") as (url, pids):
                meter = CpuMeter(pids)
                async with load.client(url, 32, self.client_kind) as http:
                    spec = lambda n: load.bento(pngs.take(n))  # noqa: E731
                    s = self.sizes
                    await self.measure(IMAGE, "bentoml", url, http, spec, s.images, 32, 3 * s.max_s, meter)
                self.extra["bentoml_rss_mb"] = tree_rss_mb(pids["bentoml"])
                self.extra["bentoml_version"] = subprocess.run(
                    [str(exe.with_name("python")), "-c", "import bentoml; print(bentoml.__version__)"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout.strip()
        except RuntimeError as exc:
            self.notes.append(f"BentoML skipped: {exc}")
            say(self.notes[-1])

    def wait_for_image_model(self, timeout_s: float) -> None:
        manifest = REPO_ROOT / "models" / "digits" / "1" / "manifest.json"
        deadline = time.monotonic() + timeout_s
        while not manifest.exists() and time.monotonic() < deadline:
            time.sleep(5)
        self.has_image = manifest.exists()
        if not self.has_image:
            self.notes.append("image workloads skipped: models/digits/1/manifest.json does not exist")


def target_values(rows: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """The numbers the targets compare, picked from this run's rows."""

    def get(workload: str, system: str, field: str = "rate") -> Any:
        for row in rows:
            if row["workload"] == workload and row["system"] == system:
                if field == "server_cpu_ms":
                    return (row.get("cpu_ms_per_job") or {}).get("server")
                return row.get(field)
        return None

    batch = [r for r in rows if r["workload"].startswith("batch ") and r["system"] == "mlqueue"]
    rss = extra.get("rss_mb", {})
    api_rss = [r["api_rss_mb"] for r in rows if r.get("api_rss_mb") is not None]
    return {
        "image_mlqueue": get(IMAGE, "mlqueue"),
        "image_raw_batched": get(RAW_IMAGE, "raw in-process"),
        "image_bentoml": get(IMAGE, "bentoml"),
        "iris_c64_mlqueue": get(IRIS64, "mlqueue"),
        "iris_c64_naive": get(IRIS64, "naive"),
        "iris_c64_mlqueue_cpu_ms": get(IRIS64, "mlqueue", "server_cpu_ms"),
        "iris_c64_naive_cpu_ms": get(IRIS64, "naive", "server_cpu_ms"),
        "floor_p50_ms": get(FLOOR, "mlqueue API", "p50_ms"),
        "idle_p50_ms": get(IDLE, "mlqueue", "p50_ms"),
        "idle_p99_ms": get(IDLE, "mlqueue", "p99_ms"),
        "cache_p50_ms": get(CACHE, "mlqueue", "p50_ms"),
        "batch_rows_per_s": batch[0]["rate"] if batch else None,
        "api_rss_max_mb": max(api_rss, default=None),
        "worker_rss_mb": rss.get("worker"),
        **fairness.target_values(extra.get("fairness")),
    }


def fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}" if abs(x) >= 10 or digits == 1 else f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


WIDTH = 124


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "",
        f"mlqueue benchmark ({'quick' if results['quick'] else 'full'}) on {m['cpu_count']} x {m['cpu_model']}, "
        f"Python {m['python']}, TensorFlow {m['versions'].get('tensorflow-cpu') or m['versions'].get('tensorflow')}",
        "",
        f"{'workload':<36} {'system':<14} {'jobs/s':>10} {'srv CPU':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'n':>7} {'err':>4} {'client':>11} {'API MB':>6}",
        f"{'':<36} {'':<14} {'':>10} {'ms/job':>8} {'':>8} {'':>8} {'':>8} {'':>7} {'':>4} {'ms/job,max%':>11}",
        "-" * WIDTH,
    ]
    for r in results["rows"]:
        per = r.get("cpu_ms_per_job") or {}
        client = "-" if "client" not in per else f"{per['client']:.2f}"
        if r.get("client_procs"):
            client += f",{r.get('client_busiest_pct', 0):.0f}%"
        lines.append(
            f"{r['workload']:<36} {r['system']:<14} {fmt(r.get('rate')):>10} {fmt(per.get('server'), 2):>8} "
            f"{fmt(r.get('p50_ms'), 2):>8} {fmt(r.get('p95_ms'), 2):>8} {fmt(r.get('p99_ms'), 2):>8} "
            f"{fmt(r.get('count')):>7} {fmt(r.get('errors', 0)):>4} {client:>11} {fmt(r.get('api_rss_mb')):>6}"
        )
    rss = results.get("rss_mb", {})
    if rss:
        lines += [
            "",
            f"RSS after the workloads: API {rss.get('api')} MB (max after any workload "
            f"{results.get('api_rss_max_mb')} MB), worker {rss.get('worker')} MB "
            f"(every shipped model loaded: {', '.join(results.get('raw', {}).get('loaded', []))})",
        ]
    costs = [r for r in results["rows"] if r.get("cpu_ms_per_job") or r.get("breakdown_ms")]
    if costs:
        lines += [
            "",
            "where the time goes: CPU ms per job by process; p50 ms of each stage of a job's life",
            "-" * WIDTH,
        ]
    for r in costs:
        # per row of a batch the numbers are tiny: keep three significant digits there
        cpu = ", ".join(
            f"{k} {v:.2f}" if v >= 0.1 else f"{k} {v:.3g}" for k, v in (r.get("cpu_ms_per_job") or {}).items()
        )
        stages = ", ".join(f"{k} {v['p50_ms']:.1f}" for k, v in (r.get("breakdown_ms") or {}).items())
        lines.append(f"{r['workload'] + ' / ' + r['system']:<40} cpu: {cpu}" + (f"  | {stages}" if stages else ""))
    for key, prof in (results.get("profiles") or {}).items():
        if prof.get("samples"):
            top = lambda pairs: ", ".join(f"{name} {share:.0%}" for name, share in pairs[:6])  # noqa: E731
            lines += [
                f"profile {key} ({prof['samples']} GIL samples): {top(prof['by_thread'])}",
                f"    by library: {top(prof['by_package'])}",
                f"    by mlqueue function: {top(prof['by_mlqueue_function'])}",
            ]
    if results.get("fairness"):
        lines += fairness.report_lines(results["fairness"])
    lines += ["", "targets (ratios within this run)", "-" * WIDTH]
    for t in results["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:,.3g} {t['unit']}"
        bound = "-" if t["bound"] is None else f"{t['bound']:,.3g}"
        lines.append(f"{t['status']:<5} {t['target']:<58} {value:>14} (bound {bound}): {t['detail']}")
    if results["notes"]:
        lines += ["", "notes:", *(f"  - {n}" for n in results["notes"])]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else Sizes()
    only = set(FAMILIES) if not args.only else {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - set(FAMILIES)
    if unknown:
        raise SystemExit(f"--only: unknown workloads {sorted(unknown)}; choose from {', '.join(FAMILIES)}")
    if args.wait_quiet_s:
        say(f"waiting up to {args.wait_quiet_s:.0f}s for the CPUs to be idle")
        say(f"CPUs {wait_for_quiet(args.wait_quiet_s):.0f}% busy")
    started = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    busy_at_start = psutil.cpu_percent(interval=1)
    if busy_at_start > 15:
        say(f"warning: the CPUs are {busy_at_start:.0f}% busy before the run (--wait-quiet-s waits for idle CPUs)")
    with tempfile.TemporaryDirectory(prefix="mlqueue-bench-") as tmp:
        bench = Bench(sizes, only, Path(tmp), args.profile, args.client, args.client_procs)
        if only & {"image", "idle"} and not bench.has_image:
            say(f"waiting up to {args.wait_model_s:.0f}s for models/digits/1/manifest.json")
            bench.wait_for_image_model(args.wait_model_s)
        if only & {"raw", "idle", "image"}:
            bench.run_raw()
        if only & {"idle", "iris", "image"}:
            await bench.run_mlqueue()
        if "batch" in only:
            await bench.run_batch()
        if "cache" in only:
            await bench.run_cache()
        if "fairness" in only:
            await bench.run_fairness()
        if only & {"iris", "image"} and not args.no_naive:
            await bench.run_naive()
        if "image" in only and bench.has_image and not args.no_bentoml:
            await bench.run_bentoml(allow_install=not args.quick)
        results = {
            "quick": args.quick,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": None,
            "machine": {**machine_info(), "loadavg_at_start": load_at_start, "cpu_busy_pct_at_start": busy_at_start},
            "sizes": dataclasses.asdict(sizes),
            "client": args.client,
            "client_procs": args.client_procs,
            "rows": bench.rows,
            "targets": evaluate(target_values(bench.rows, bench.extra)),
            "notes": bench.notes,
            "profiles": bench.profiles,
            **bench.extra,
        }
    results["duration_s"] = round(time.monotonic() - started, 1)
    return results


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="mlqueue benchmark: mlqueue against raw, naive and BentoML")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run in a few minutes")
    parser.add_argument("--only", help=f"comma-separated workloads among {', '.join(FAMILIES)}")
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
