"""A private S3-compatible server on a free loopback port (moto's standalone server, over HTTP),
for the model-storage tests: the code under test talks to it through the same fsspec/s3fs client
it uses against AWS, MinIO or Ceph."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from devtools.redis_server import free_port

# moto accepts any credentials; the clients need some to sign requests
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "mlqueue-test",
    "AWS_SECRET_ACCESS_KEY": "mlqueue-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this server (the settings' endpoint + standard AWS_*)."""
        return {**CREDENTIALS, "MLQUEUE_S3_ENDPOINT_URL": self.endpoint_url}

    def start(self, timeout_s: float = 30) -> S3Server:
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        if self.log_path:
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        else:
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                httpx.get(f"{self.endpoint_url}/moto-api/", timeout=1)
                return self
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto server did not start on port {self.port}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
