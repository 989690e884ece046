"""`pip install ./client` into a clean virtualenv gives a working `mlqueue` with no server packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv

import httpx
import pytest

from tests.client.helpers import CLIENT_DIR

pytestmark = pytest.mark.integration

SERVER_PACKAGES = ("fastapi", "celery", "redis", "uvicorn", "pydantic", "scikit-learn", "tensorflow-cpu", "numpy")


def _index_reachable() -> bool:
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        return httpx.get(index.rstrip("/") + "/httpx/", timeout=5, follow_redirects=True).status_code == 200
    except httpx.HTTPError:
        return False


def test_pip_install_client_into_a_clean_venv_gives_a_working_cli(stack, tmp_path):
    if not _index_reachable():
        pytest.skip("pip cannot reach a package index (PIP_INDEX_URL or pypi.org): cannot install httpx and rich")
    # A copy, so the build leaves no build/ or .egg-info in the worktree.
    source = shutil.copytree(CLIENT_DIR, tmp_path / "client", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    python, mlqueue = env_dir / "bin" / "python", env_dir / "bin" / "mlqueue"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLQUEUE_URL")}
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = subprocess.run([python, "-m", "pip", "list"], env=env, capture_output=True, text=True).stdout.lower()
    assert "mlqueue-client" in listed and "httpx" in listed and "rich" in listed
    assert not [p for p in SERVER_PACKAGES if f"\n{p} " in listed], listed
    helped = subprocess.run([mlqueue, "--help"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert helped.returncode == 0 and "exit codes: 0 ok, 1 job_failed" in helped.stdout
    models = subprocess.run([mlqueue, "--json", "models"], env=env | {"MLQUEUE_URL": stack.api_url}, cwd=tmp_path,
                            capture_output=True, text=True)  # fmt: skip
    assert models.returncode == 0 and '"iris"' in models.stdout, models.stderr
