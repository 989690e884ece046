"""Running the CLI as a user does: ``python -m mlqueue`` in a subprocess, importing from client/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from shared.settings import REPO_ROOT

CLIENT_DIR = REPO_ROOT / "client"


def cli_env(url: str | None = None, api_key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLQUEUE_")}
    # Only client/ on the path, and run from a temporary cwd by callers that care: the CLI must
    # not need the server's packages.
    env["PYTHONPATH"] = str(CLIENT_DIR)
    if url:
        env["MLQUEUE_URL"] = url
    if api_key:
        env["MLQUEUE_API_KEY"] = api_key
    return env


def run_cli(
    *args: str, url: str | None = None, api_key: str | None = None, cwd: Any = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlqueue", *args],
        env=cli_env(url, api_key),
        cwd=cwd or CLIENT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_json(*args: str, url: str, api_key: str | None = None) -> Any:
    result = run_cli("--json", *args, url=url, api_key=api_key)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def parse_key_output(text: str) -> tuple[str, str]:
    """The key and the MLQUEUE_API_KEYS entry from ``keys create`` / ``python -m api.keys`` output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[1], lines[3]
