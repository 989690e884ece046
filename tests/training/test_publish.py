"""``--publish``: a training script uploads the version it trained to an ``s3://`` repository
(a real S3-compatible server on loopback), through the same code that workers read it with."""

import subprocess
import sys

from shared.manifests import ModelRepository
from shared.model_store import ModelStore
from shared.settings import REPO_ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)


def test_a_training_script_publishes_what_it_trained(s3_url: str, s3_server):
    before = sorted(p.name for p in (REPO_ROOT / "models" / "iris").iterdir())
    done = run("-m", "training.iris", "--version", "7", "--publish", s3_url)
    assert done.returncode == 0, done.stderr
    assert f"published iris v7 to {s3_url}" in done.stdout
    repo = ModelRepository(s3_url, endpoint_url=s3_server.endpoint_url)
    manifest = repo.get("iris", 7)
    assert set(ModelStore(s3_url, s3_server.endpoint_url).listing()) == {"iris/7/manifest.json", "iris/7/model.joblib"}
    assert manifest.sha256 and manifest.artifact == "model.joblib"
    assert sorted(p.name for p in (REPO_ROOT / "models" / "iris").iterdir()) == before  # trained elsewhere


def test_a_shipped_version_is_published_as_it_is_and_never_twice(s3_url: str, s3_server):
    done = run("-m", "training", "iris", "--publish", s3_url)
    assert done.returncode == 0, done.stderr
    shipped = ModelRepository(REPO_ROOT / "models").get("iris", 1)
    assert ModelRepository(s3_url, endpoint_url=s3_server.endpoint_url).get("iris", 1) == shipped
    again = run("-m", "training", "iris", "--publish", s3_url)
    assert again.returncode == 1 and "publish refused: iris v1 is already in" in again.stderr
    assert "Traceback" not in again.stderr


def test_an_unknown_model_is_refused(s3_url: str):
    done = run("-m", "training", "nope", "--publish", s3_url)
    assert done.returncode == 2 and "unknown models nope" in done.stderr
