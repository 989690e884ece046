"""A private S3-compatible server on a free loopback port (moto's standalone server, over HTTP),
for the model-storage tests: the code under test talks to it through the same fsspec/s3fs client
it uses against AWS, MinIO or Ceph."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from devtools.server_process import ServerProcess, free_port

# moto accepts any credentials; the clients need some to sign requests
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "mlqueue-test",
    "AWS_SECRET_ACCESS_KEY": "mlqueue-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server(ServerProcess):
    start_timeout_s = 30  # a Python server: slower to answer than Redis

    def __init__(self, log_path: Path | None = None) -> None:
        super().__init__()
        self.port = free_port()
        self.log_path = log_path

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this server (the settings' endpoint + standard AWS_*)."""
        return {**CREDENTIALS, "MLQUEUE_S3_ENDPOINT_URL": self.endpoint_url}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def describe(self) -> str:
        return f"moto server on port {self.port}"

    def ready(self) -> bool:
        try:
            httpx.get(f"{self.endpoint_url}/moto-api/", timeout=1)
            return True
        except httpx.HTTPError:
            return False
