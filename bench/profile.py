"""``--profile``: py-spy samples of the API and the worker while a workload runs, and a summary of
where their Python CPU time went.

py-spy records with ``--gil``: only the thread holding the GIL is sampled, so a sample is Python
CPU time (threads waiting on Redis, on a queue or in epoll are not counted). Native work that
releases the GIL (a TensorFlow forward pass) is not seen: ``bench.raw`` measures that. Sampling
costs CPU (about a third of a core per process at 100 Hz), so a profiled run's numbers are lower
than the benchmark's: the recorders' CPU is reported apart, as ``py-spy:...``.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.stats import Json

# Innermost frame that matches decides where a sample's time goes (first match in this order).
PACKAGES = (
    ("redis/", "redis-py"),
    ("kombu/", "kombu"),
    ("vine/", "kombu"),
    ("celery/", "celery"),
    ("billiard/", "celery"),
    ("pydantic", "pydantic"),
    ("sklearn/", "model"),
    ("numpy/", "model"),
    ("tensorflow/", "model"),
    ("keras/", "model"),
    ("json/", "json"),
    ("prometheus_client", "prometheus"),
    ("uuid.py", "uuid"),
    ("logging/", "logging"),
    ("threading.py", "threading"),
    ("concurrent/", "threading"),
    ("queue.py", "threading"),
    ("starlette/", "starlette/fastapi"),
    ("fastapi/", "starlette/fastapi"),
    ("uvicorn/", "uvicorn"),
    ("asyncio/", "asyncio"),
    ("anyio/", "anyio"),
    ("PIL/", "pillow"),
    ("multipart", "multipart"),
    ("(api/", "mlqueue api/"),
    ("(worker/", "mlqueue worker/"),
    ("(shared/", "mlqueue shared/"),
)
# Which thread (or role) a stack belongs to, from frames anywhere in it.
ROLES = (
    ("asynloop", "celery consumer loop"),
    ("fast_trace_task", "task threads"),
    ("Batcher._loop", "batcher thread"),
    ("Heartbeat", "heartbeat"),
    ("JobEvents", "events listener"),
    ("WorkerThread", "anyio threads"),
)
MLQUEUE_FRAME = re.compile(r"\((api|worker|shared)/[^:]+")


class Profiler:
    """py-spy record (collapsed stacks) of some pids while a workload runs; skipped without py-spy."""

    def __init__(self, out_dir: Path | None, rate_hz: int = 100) -> None:
        self.out_dir = out_dir
        self.rate_hz = rate_hz
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    @property
    def enabled(self) -> bool:
        return self.out_dir is not None and Path(self.exe).exists()

    def start(self, label: str, pids: dict[str, int], seconds: float) -> None:
        if not self.enabled:
            return
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            path = self.out_dir / f"{label}.{name}.txt"
            cmd = [self.exe, "record", "--pid", str(pid), "--duration", str(int(seconds) + 1)]
            cmd += ["--rate", str(self.rate_hz), "--format", "raw", "--gil", "--nonblocking", "--output", str(path)]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append((f"{label}.{name}", proc, path))

    def pids(self) -> dict[str, int]:
        """The recorders' own processes (sampling costs CPU: counted apart, as ``py-spy:...``)."""
        return {f"py-spy:{key.rsplit('.', 1)[-1]}": proc.pid for key, proc, _ in self.procs}

    def stop(self) -> Json:
        """Stop the recorders (SIGINT makes py-spy write its file) and summarize each."""
        summaries = {}
        for key, proc, path in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if path.exists():
                summaries[key] = {"file": str(path), **summarize_profile(path.read_text(errors="replace"))}
        self.procs = []
        return summaries


def summarize_profile(collapsed: str, top: int = 15) -> Json:
    """Shares of the samples in py-spy's collapsed stacks (``frame;frame;... count`` lines): by thread
    role, by the innermost library frame, and by the innermost mlqueue function (which includes the
    library calls it makes); plus the hottest leaf frames."""
    roles: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        roles[next((role for key, role in ROLES if key in stack), "main / event loop")] += n
        packages[_package(frames)] += n
        leaves[frames[-1]] += n
        mine = next((f for f in reversed(frames) if MLQUEUE_FRAME.search(f)), None)
        if mine is not None:
            functions[re.sub(r":\d+\)$", ")", mine)] += n

    def shares(counter: Counter[str], k: int = top) -> list[tuple[str, float]]:
        return [(name, round(n / total, 3)) for name, n in counter.most_common(k)] if total else []

    return {
        "samples": total,
        "by_thread": shares(roles),
        "by_package": shares(packages),
        "by_mlqueue_function": shares(functions),
        "top_leaf_frames": shares(leaves, 10),
    }


def _package(frames: list[str]) -> str:
    for frame in reversed(frames):
        for key, name in PACKAGES:
            if key in frame:
                return name
    return "other"
