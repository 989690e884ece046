"""What one worker process holds: settings, the job store and the loaded models."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from shared.manifests import ModelRepository
from shared.settings import Settings
from shared.store import JobStore, redis_client
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


_context: WorkerContext | None = None


def cap_threads(settings: Settings) -> int:
    """Rule 2: BLAS/OpenMP/TF threads = cores ÷ processes. Must run before numpy is imported."""
    threads = settings.worker_threads or os.cpu_count() or 1
    for var in _THREAD_VARS:
        os.environ.setdefault(var, str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return threads


def init_context(settings: Settings) -> WorkerContext:
    """Load every model (verified, warmed up). Called once per process, after the pool exists."""
    global _context
    runtime = ModelRuntime(ModelRepository(settings.models_dir))
    runtime.load_all()
    store = JobStore(redis_client(settings), redis_client(settings, decode=False))
    _context = WorkerContext(settings, store, runtime)
    return _context


def current() -> WorkerContext:
    if _context is None:
        raise RuntimeError("worker context not initialised: models load in the worker_init signal")
    return _context
