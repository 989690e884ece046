"""What one worker process holds: settings, the job store and the loaded models."""

from __future__ import annotations

import logging
import math
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.batch_store import BatchStore
from shared.jobs import Job, WebhookEvent
from shared.manifests import ModelRepository
from shared.redis_connection import redis_client
from shared.scheduler import Scheduler
from shared.settings import Settings
from shared.store import JobStore
from worker.runtime import ModelRuntime

log = logging.getLogger(__name__)

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


@dataclass
class WorkerContext:
    settings: Settings
    store: JobStore
    runtime: ModelRuntime
    batches: BatchStore
    scheduler: Scheduler
    hostname: str = ""  # set when the worker is ready
    # This process's life: a worker restarted under the same hostname is another incarnation, so
    # the jobs the dead one was running are not taken for the new one's.
    incarnation: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # Queues a webhook event; the Celery app sets it (this module stays free of Celery).
    notify: Callable[[Job, WebhookEvent], str | None] = lambda job, event: None  # -> the webhook id sent
    _slots: dict[str, tuple[threading.BoundedSemaphore, threading.BoundedSemaphore]] = field(default_factory=dict)
    _slots_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def runner(self) -> str:
        """Recorded on the work this process claims; the sweeper compares it with this worker's presence."""
        return f"{self.hostname}#{self.incarnation}"

    def slots(self, queue: str) -> tuple[threading.BoundedSemaphore, threading.BoundedSemaphore]:
        """``queue``'s slots: one is held while claiming and running one item (``worker_slots``
        of them); the second is held too when that item is a batch chunk, and has one fewer, so a
        slot is always kept for single jobs: one arriving behind a flood of chunks is claimed at
        once instead of after the chunk that frees a slot (with one slot, both share it)."""
        with self._slots_lock:
            if queue not in self._slots:
                n = self.settings.worker_slots
                self._slots[queue] = threading.BoundedSemaphore(n), threading.BoundedSemaphore(max(1, n - 1))
            return self._slots[queue]


_context: WorkerContext | None = None


def available_cpus(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: its affinity set, capped by a cgroup v2 CPU quota. In a
    container limited to 2 CPUs on a 64-core host, ``os.cpu_count()`` says 64, and 64 BLAS and
    TensorFlow threads per process would fight over 2 CPUs."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit visible: the affinity set is the answer
    return cpus


def cap_threads(settings: Settings) -> int:
    """BLAS/OpenMP/TF threads = cores ÷ processes, so processes on one machine do not oversubscribe
    its cores. Must run before numpy is imported (the libraries read these once, at load)."""
    threads = settings.worker_threads or available_cpus()
    for var in _THREAD_VARS:
        os.environ.setdefault(var, str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return threads


def init_context(settings: Settings, load_models: bool = True) -> WorkerContext:
    """Load every model (verified, warmed up). Called once per process, after the pool exists.
    ``load_models=False`` for a worker that consumes no model queue (e.g. webhooks only)."""
    global _context
    runtime = ModelRuntime(ModelRepository.from_settings(settings))
    if load_models:
        runtime.load_all()
    _context = connect(settings, runtime)
    return _context


def connect(settings: Settings, runtime: ModelRuntime) -> WorkerContext:
    """The Redis side of a worker context (tests build contexts with it too)."""
    text, binary = redis_client(settings), redis_client(settings, decode=False)
    batches = BatchStore(text, binary, settings.job_ttl_s)
    return WorkerContext(settings, JobStore(text, binary), runtime, batches, Scheduler(text, settings.job_ttl_s))


def current() -> WorkerContext:
    if _context is None:
        raise RuntimeError("worker context not initialised: models load in the worker_init signal")
    return _context
