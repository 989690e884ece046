"""Start the real processes (Redis, worker, API) on free ports, the way ``make run`` and the
containers do: for the tests and the benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devtools.redis_server import RedisServer
from devtools.server_process import free_port
from shared.settings import REPO_ROOT


@dataclass
class Stack:
    redis: RedisServer
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Run the API under this (e.g. ``ip netns exec B``: the multi-host tests' "host" for it).
    api_prefix: tuple[str, ...] = ()

    @property
    def api_url(self) -> str:
        return f"http://{self.env.get('MLQUEUE_API_HOST', '127.0.0.1')}:{self.env['MLQUEUE_API_PORT']}"

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """``env``: variables that override the stack's for this process only; ``prefix``: a
        command to run it under (``ip netns exec C`` runs it on the multi-host tests' host C)."""
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [*prefix, sys.executable, *args],
                cwd=REPO_ROOT,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def start_worker(
        self, name: str = "worker", *extra: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        return self.start(name, "-m", "worker", f"--hostname={name}@%h", *extra, env=env, prefix=prefix)

    def start_api(self) -> subprocess.Popen[bytes]:
        return self.start("api", "-m", "api", prefix=self.api_prefix)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_group(proc, sig, timeout_s)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.redis.stop()

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 120) -> None:
        """Until ``condition()`` holds (a worker joined, a queue drained), checking every 0.2 s."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met in {timeout_s}s")
            time.sleep(0.2)

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until /readyz says every model has a live worker and no model is still loading (a model
        that failed to load leaves the stack ``degraded``, which is as ready as it will get)."""
        wait_http(
            f"{self.api_url}/readyz",
            self.procs,
            timeout_s,
            ready=_nothing_loading,
            log=self.log,
            on_timeout=lambda: f"{self.log('worker')}\n{self.log('api')}",
        )


def _nothing_loading(response: httpx.Response) -> bool:
    models = response.json().get("models", {}) if response.status_code == 200 else {}
    return response.status_code == 200 and all(m.get("status") != "loading" for m in models.values())


def wait_http(
    url: str,
    procs: Mapping[str, subprocess.Popen[bytes]],
    timeout_s: float,
    ready: Callable[[httpx.Response], bool] = lambda response: response.status_code == 200,
    log: Callable[[str], str] = lambda name: "",
    on_timeout: Callable[[], str] = lambda: "",
) -> None:
    """Until a GET of ``url`` is ``ready`` (a 200 unless told), checking every 0.2 s. One of
    ``procs`` exiting meanwhile fails at once, with its ``log``; a timeout adds ``on_timeout()``."""
    deadline = time.monotonic() + timeout_s
    last: httpx.Response | Exception | None = None
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                tail = log(name)
                raise RuntimeError(
                    f"{name} exited with code {proc.returncode} during start-up" + (f":\n{tail}" if tail else "")
                )
        try:
            last = httpx.get(url, timeout=2)
            if ready(last):
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    context = on_timeout()
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s: {last!r}" + (f"\n{context}" if context else ""))


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
    """Stop ``proc`` and everything it started (it leads its own session): ``sig`` to the group,
    then SIGKILL after ``timeout_s``. A process already gone is fine."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def make_stack(tmp: Path, redis: RedisServer | None = None, redis_url: str | None = None, **settings: str) -> Stack:
    """``redis``: a server already started (stopped with the stack); ``redis_url``: the URL the
    processes get instead of its own (a Sentinel group's)."""
    redis = redis or RedisServer(data_dir=tmp / "redis").start()
    env = dict(os.environ)
    env.update(
        {
            "MLQUEUE_REDIS_URL": redis_url or redis.url,
            "MLQUEUE_API_PORT": str(free_port()),
            "MLQUEUE_HEARTBEAT_INTERVAL_S": "1",
            "MLQUEUE_WORKER_CONCURRENCY": "8",
            "MLQUEUE_WORKER_THREADS": "1",
            "MLQUEUE_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # every test client is 127.0.0.1: the rate-limit tests set their own limits
            "MLQUEUE_RATE_LIMIT": "1000000/minute",
            "MLQUEUE_BATCH_RATE_LIMIT": "1000000/minute",
            # tests that need a job to stay queued resubmit the same input: the cache test turns it on
            "MLQUEUE_CACHE_TTL_S": "0",
        }
    )
    env.update({f"MLQUEUE_{k.upper()}": v for k, v in settings.items()})
    return Stack(redis=redis, env=env, log_dir=tmp)


@contextmanager
def running_stack(tmp: Path, **settings: str) -> Iterator[Stack]:
    """Redis + one worker + the API, ready; all stopped afterwards, also when start-up fails."""
    stack = make_stack(tmp, None, None, **settings)
    try:
        stack.start_worker()
        stack.start_api()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop_all()
