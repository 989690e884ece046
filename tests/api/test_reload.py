"""Hot reload under load: new versions are picked up, nothing queued fails, bad versions never serve."""

import httpx
import pytest

from devtools.processes import running_stack
from tests.api.helpers import steady_load, submit_and_wait
from training import iris

pytestmark = [pytest.mark.integration, pytest.mark.fault]


@pytest.fixture
def iris_stack(tmp_path):
    models = tmp_path / "models"
    iris.train(models, 1)
    with running_stack(tmp_path, models_dir=str(models)) as s:
        yield s, models


def test_reload_to_a_new_version_under_load_fails_no_job(iris_stack):
    stack, models = iris_stack
    with steady_load(stack.api_url) as results, httpx.Client(base_url=stack.api_url, timeout=180) as client:
        iris.train(models, 2)
        assert submit_and_wait(client).json()["version"] == 1  # on disk, not loaded yet: v1 still serves
        reload = client.post("/v1/models/iris/reload").json()
        assert reload["status"] == "loaded" and reload["version"] == 2
        assert all(w["status"] == "loaded" for w in reload["workers"].values())
        after = submit_and_wait(client).json()
        assert after["version"] == 2 and after["status"] == "succeeded"
        assert submit_and_wait(client, version=1).json()["version"] == 1  # old versions stay pinnable
    assert len(results) > 20
    assert {r["status"] for r in results} == {"succeeded"}, [r for r in results if r["status"] != "succeeded"][:3]
    assert {r["version"] for r in results} <= {1, 2}


def test_a_version_that_fails_to_load_never_serves_and_says_why(iris_stack):
    stack, models = iris_stack
    iris.train(models, 2)
    artifact = models / "iris" / "2" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"0123456789")
    with httpx.Client(base_url=stack.api_url, timeout=180) as client:
        reload = client.post("/v1/models/iris/reload").json()
        assert reload["status"] == "failed"
        (outcome,) = reload["workers"].values()
        assert "sha256 mismatch" in outcome["error"]
        assert submit_and_wait(client).json()["version"] == 1
        pinned = submit_and_wait(client, version=2)
        assert pinned.status_code == 503 and pinned.json()["code"] == "model_version_unavailable"
        v2 = next(v for v in client.get("/v1/models/iris").json()["versions"] if v["version"] == 2)
        assert v2["loaded_on"] == [] and "sha256 mismatch" in next(iter(v2["load_errors"].values()))
        assert client.get("/readyz").status_code == 200  # v1 serves: still ready


def test_reload_of_an_unknown_model_is_404(iris_stack):
    stack, _ = iris_stack
    response = httpx.post(f"{stack.api_url}/v1/models/nope/reload")
    assert response.status_code == 404
