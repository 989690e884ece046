"""A local server the tests and ``make run`` start on a free port (Redis, a Sentinel, moto's S3):
launched with its output in a log file, waited on until it answers, stopped with TERM then KILL.
Each server says only how it is started (``command``) and how it answers (``ready``)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Self


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """Subclasses give ``command()``, ``ready()`` and ``describe()``; ``log_path`` (None: no log) and
    ``start_timeout_s`` if theirs differ."""

    log_path: Path | None = None
    start_timeout_s: float = 10

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the server answers yet (a refused connection is False, not an error)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def start(self, timeout_s: float | None = None) -> Self:
        """Launch and wait until ``ready()`` (``start_timeout_s`` unless told); a server that exits or
        stays silent is stopped and named."""
        if self.log_path is None:
            self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        else:
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + (self.start_timeout_s if timeout_s is None else timeout_s)
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.describe()} did not start")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: the crash a failover test needs (no shutdown, no last write flushed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self, timeout_s: float = 10) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
