"""Logging for every mlqueue process: one formatter, JSON in containers, readable on a terminal.

``job_id`` and ``request_id`` are bound in context variables and added to every record logged
while they are set.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_CONTEXT = (("job_id", job_id_var), ("request_id", request_id_var))


@contextlib.contextmanager
def bound(job_id: str | None, request_id: str | None = None) -> Iterator[None]:
    """Bind ids to every log record made inside (a task binds the job and the request it came from)."""
    tokens = [(job_id_var, job_id_var.set(job_id)), (request_id_var, request_id_var.set(request_id))]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name, _ in _CONTEXT:
            if getattr(record, name, None):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s%(ctx)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        ctx = " ".join(f"{n}={getattr(record, n)}" for n, _ in _CONTEXT if getattr(record, n, None))
        record.ctx = f" [{ctx}]" if ctx else ""
        return super().format(record)


_NATIVE_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}


def capture_native_stderr() -> None:
    """Native libraries (TensorFlow's C++/absl logging) write to file descriptor 2 directly. Point
    that descriptor at a pipe and log each line through the formatter, so a JSON log stays JSON;
    Python keeps writing to the original stderr."""
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    logger = logging.getLogger("native")

    def pump() -> None:
        with os.fdopen(read_fd, errors="replace") as lines:
            for line in lines:
                if line.strip():
                    logger.log(_NATIVE_LEVELS.get(line[:1], logging.WARNING), "%s", line.rstrip())

    threading.Thread(target=pump, name="native-stderr", daemon=True).start()


def setup_logging(fmt: str = "console", level: str = "INFO") -> None:
    """Route every logger (uvicorn's and Celery's included) through one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # library warnings (Celery's root-user one) as log records too
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task", "celery.worker"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
