"""Supervision: start each system under test on this machine, hand out its URL and the process ids
whose CPU is its cost, and stop all of it afterwards, also when start-up fails. mlqueue runs on
``devtools.processes`` stacks (private Redis + workers + API); the naive tutorial service and
BentoML (in a virtualenv of its own, made on first use) run as process groups started here."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from bench.console import say
from devtools.processes import Stack, make_stack, stop_group, wait_http
from devtools.redis_server import RedisServer
from devtools.server_process import free_port
from shared.settings import REPO_ROOT

BENTOML_VENV = Path(os.environ.get("BENCH_BENTOML_VENV", "/tmp/bentoml-venv"))
# The product's defaults where devtools.processes sets test-friendly ones; the cache is off (a
# workload turns it on for its own stack), so every job reaches a worker; rate limits out of the way.
STACK_SETTINGS = {
    "log_level": "WARNING",
    "rate_limit": "1000000000/minute",
    "batch_rate_limit": "1000000000/minute",
    "worker_concurrency": "16",
    "worker_threads": "0",
    "heartbeat_interval_s": "5",
    "cache_ttl_s": "0",
}
# A system's processes by role ("api", "worker", "redis", ...): what its CPU and memory are read from.
Pids = dict[str, int]


@contextlib.contextmanager
def mlqueue_stack(tmp: Path, workers: int = 1, **overrides: str) -> Iterator[Stack]:
    """Redis + ``workers`` worker processes (``worker``, ``worker2``, ...) + the API, every worker live."""
    stack = make_stack(tmp, None, None, **{**STACK_SETTINGS, **overrides})
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


def stack_pids(stack: Stack) -> Pids:
    """The processes whose CPU is the server's: API, every worker, Redis."""
    return {name: proc.pid for name, proc in stack.procs.items()} | {"redis": _pid(stack.redis)}


def _pid(redis: RedisServer) -> int:
    if redis.process is None:  # RedisServer.process is set by start(): a stack's server is started
        raise RuntimeError(f"{redis.url}: not started")
    return redis.process.pid


def _spawn(args: list[str], log: Path, env: Mapping[str, str], cwd: Path = REPO_ROOT) -> subprocess.Popen[bytes]:
    """A process leading its own group (``stop_group`` stops it with its children), output to ``log``."""
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def naive_service(tmp: Path) -> Iterator[tuple[str, Pids]]:
    """Redis, the tutorial's prefork Celery worker and its uvicorn front end (1 worker)."""
    redis = RedisServer(data_dir=tmp / "naive-redis").start()
    env = {**os.environ, "NAIVE_REDIS_URL": redis.url, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    port = free_port()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        worker = ["-m", "celery", "-A", "bench.naive.tasks", "worker", "--loglevel=WARNING"]
        procs["worker"] = _spawn(
            [sys.executable, *worker, "--without-mingle", "--without-gossip"], tmp / "naive-worker.log", env
        )
        api = ["-m", "uvicorn", "bench.naive.app:app", "--port", str(port), "--workers", "1"]
        procs["api"] = _spawn(
            [sys.executable, *api, "--log-level", "warning", "--no-access-log"], tmp / "naive-api.log", env
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/docs", procs, 60)
        yield url, {"api": procs["api"].pid, "worker": procs["worker"].pid, "redis": _pid(redis)}
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
    try:
        pins = [f"{d}=={importlib.metadata.version(d)}" for d in ("tensorflow-cpu", "keras")]
        say(f"creating {BENTOML_VENV} (bentoml, {', '.join(pins)}): up to 5 minutes")
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
def bentoml_service(tmp: Path, exe: Path, model: Path) -> Iterator[tuple[str, Pids]]:
    """``bentoml serve`` of ``bench/bento/service.py`` on ``model``, ready (``/readyz``)."""
    port = free_port()
    env = {
        **os.environ,
        "DIGITS_MODEL": str(model),
        "BENTOML_HOME": str(tmp / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": "",
    }
    args = [str(exe), "serve", "service:Digits", "--port", str(port), "--host", "127.0.0.1"]
    proc = _spawn(args, tmp / "bentoml.log", env, cwd=REPO_ROOT / "bench" / "bento")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", {"bentoml": proc}, 180)
        yield url, {"bentoml": proc.pid}
    finally:
        stop_group(proc)
