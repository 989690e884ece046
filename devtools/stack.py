"""``make run``: the whole stack on one machine, no Docker, stopped together by Ctrl-C.

Starts Redis (unless ``MLQUEUE_REDIS_URL`` names one), trains any shipped model whose artifact is
missing, then a model worker, a webhook-delivery worker, the API and Flower, using the same
commands as the containers. Secrets that are not set (webhook signing, Flower's password) are
generated for this run and printed.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devtools.redis_server import RedisServer
from devtools.server_process import free_port
from shared.settings import REPO_ROOT, Settings, get_settings

log = logging.getLogger("mlqueue.run")
RUN_DIR = Path(os.environ.get("MLQUEUE_RUN_DIR", REPO_ROOT / ".run"))  # Redis data of `make run`
AUTH_OFF = """
  !!! AUTHENTICATION IS OFF: no MLQUEUE_API_KEYS are configured, so anyone who can reach the API
  !!! can submit jobs and read every job. Create keys with `make api-key NAME=me SCOPES=submit,read`."""


def check_ports(settings: Settings) -> None:
    """Fail at once, naming the setting that moves it, when a port the stack listens on is taken
    (another `make run`, or anything else on 8000 or 5555), instead of a traceback from one child."""
    wanted = {
        "MLQUEUE_API_PORT": (settings.api_host, settings.api_port),
        "MLQUEUE_FLOWER_PORT": (settings.flower_bind, settings.flower_port),
    }
    if settings.worker_metrics_port:
        wanted["MLQUEUE_WORKER_METRICS_PORT"] = (settings.worker_metrics_bind, settings.worker_metrics_port)
    taken = [f"{host} port {port} ({name})" for name, (host, port) in wanted.items() if not port_free(host, port)]
    if taken:
        raise RuntimeError(
            f"already in use: {', '.join(taken)}; stop what holds it, or set that variable to a free port"
        )


def local_url(host: str, port: int) -> str:
    """Where this machine reaches a server bound to ``host`` (a wildcard bind answers on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.info("starting %s: python %s", name, " ".join(args))
    return subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env)


def wait_ready(url: str, procs: dict[str, subprocess.Popen[bytes]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} during start-up")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")


def environment() -> tuple[dict[str, str], RedisServer | None]:
    """The environment every process gets, and the Redis started for it (if any)."""
    env = dict(os.environ)
    redis_server = None
    if "MLQUEUE_REDIS_URL" not in os.environ:
        # A private Redis with an append-only file in .run/, so queued jobs survive a restart;
        # on a free port, because 6379 is often taken by another Redis.
        redis_server = RedisServer(port=free_port(), data_dir=RUN_DIR / "redis", persist=True).start()
        env["MLQUEUE_REDIS_URL"] = redis_server.url
        log.info("redis: %s (data in %s)", redis_server.url, redis_server.data_dir)
    env.setdefault("MLQUEUE_WEBHOOK_SECRET", "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    env.setdefault("MLQUEUE_FLOWER_BASIC_AUTH", "admin:" + secrets.token_urlsafe(12))
    return env, redis_server


def banner(env: dict[str, str], seconds: float) -> str:
    settings = get_settings()
    base = local_url(settings.api_host, settings.api_port)
    user, _, password = env["MLQUEUE_FLOWER_BASIC_AUTH"].partition(":")
    auth = "  Auth      API keys required (MLQUEUE_API_KEYS)" if env.get("MLQUEUE_API_KEYS") else AUTH_OFF
    return f"""
mlqueue is ready in {seconds:.1f}s
  API       {base}   (docs: {base}/docs, metrics: {base}/metrics)
  Flower    {local_url(settings.flower_bind, settings.flower_port)}   (user {user}, password {password})
  Redis     {env["MLQUEUE_REDIS_URL"]}
  Webhooks  signed with MLQUEUE_WEBHOOK_SECRET={env["MLQUEUE_WEBHOOK_SECRET"]}
{auth}
Press Ctrl-C to stop everything.
"""


def main() -> int:
    logging.basicConfig(level="INFO", format="%(asctime)s run: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per /readyz poll while starting
    began = time.monotonic()
    settings = get_settings()
    try:
        check_ports(settings)
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    env, redis_server = environment()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        subprocess.run([sys.executable, "-m", "training"], cwd=REPO_ROOT, env=env, check=True)
        webhooks_env = {**env, "MLQUEUE_WORKER_QUEUES": "webhooks", "MLQUEUE_WORKER_CONCURRENCY": "32"}
        procs["worker"] = start("worker", ["-m", "worker", "--hostname=worker@%h"], env)
        procs["webhooks"] = start("webhooks", ["-m", "worker", "--hostname=webhooks@%h"], webhooks_env)
        procs["api"] = start("api", ["-m", "api"], env)
        procs["flower"] = start("flower", ["-m", "worker.flower"], env)
        wait_ready(f"{local_url(settings.api_host, settings.api_port)}/readyz", procs, timeout_s=300)
        print(banner(env, time.monotonic() - began), flush=True)
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    log.error("%s exited with code %s; stopping the stack", name, proc.returncode)
                    stopping, code = True, 1
            time.sleep(0.3)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        log.error("%s", exc)
        code = 1
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in 20s; killing it", name)
                proc.kill()
        if redis_server:
            redis_server.stop()
        log.info("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
