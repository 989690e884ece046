"""The whole stack on an ``s3://`` model repository (a real S3-compatible server on loopback,
reached through the same client code production uses): a worker starts from it and serves, a
version published while jobs run is picked up by reload with none failed, a tampered object is
refused and never serves."""

import httpx
import pytest

from devtools.processes import running_stack
from shared.model_store import ModelStore
from tests.api.helpers import steady_load, submit_and_wait
from training import iris
from training.publish import publish

pytestmark = [pytest.mark.integration]


@pytest.fixture
def s3_stack(tmp_path, s3_url, s3_server):
    trained = tmp_path / "trained"
    for version in (1, 2, 3):
        iris.train(trained, version)
    publish(trained / "iris" / "1", s3_url, s3_server.endpoint_url)
    with running_stack(
        tmp_path,
        models_url=s3_url,
        s3_endpoint_url=s3_server.endpoint_url,
        model_cache_dir=str(tmp_path / "cache"),
    ) as s:
        yield s, trained, s3_url, s3_server.endpoint_url


def test_a_worker_starts_from_s3_and_serves(s3_stack):
    stack = s3_stack[0]
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        job = submit_and_wait(client).json()
        assert job["status"] == "succeeded" and job["version"] == 1 and job["output"]["label"] == "setosa"
        (entry,) = client.get("/v1/models").json()["models"]
        assert entry["name"] == "iris" and entry["versions"][0]["loaded_on"]
    assert "model.downloaded model=iris version=1" in stack.log("worker")


def test_a_version_published_under_load_is_picked_up_by_reload_with_no_job_failed(s3_stack):
    stack, trained, url, endpoint = s3_stack
    with steady_load(stack.api_url) as results, httpx.Client(base_url=stack.api_url, timeout=180) as client:
        publish(trained / "iris" / "2", url, endpoint)
        reload = client.post("/v1/models/iris/reload").json()
        assert reload["status"] == "loaded" and reload["version"] == 2, reload
        after = submit_and_wait(client).json()
        assert after["version"] == 2 and after["status"] == "succeeded"
        assert submit_and_wait(client, version=1).json()["status"] == "succeeded"  # old versions stay pinnable
    assert len(results) > 20
    assert {r["status"] for r in results} == {"succeeded"}, [r for r in results if r["status"] != "succeeded"][:3]
    assert {r["version"] for r in results} == {1, 2}


def test_a_tampered_object_is_refused_and_never_serves(s3_stack):
    stack, trained, url, endpoint = s3_stack
    publish(trained / "iris" / "2", url, endpoint)
    store = ModelStore(url, endpoint)
    good = store.read("iris/2/model.joblib")
    store.write("iris/2/model.joblib", good[:-10] + b"0123456789")  # after publish: the manifest's sha256 stands
    with httpx.Client(base_url=stack.api_url, timeout=180) as client:
        reload = client.post("/v1/models/iris/reload").json()
        assert reload["status"] == "failed"
        (outcome,) = reload["workers"].values()
        assert "sha256 mismatch" in outcome["error"] and "refusing to load" in outcome["error"]
        assert submit_and_wait(client).json()["version"] == 1
        pinned = submit_and_wait(client, version=2)
        assert pinned.status_code == 503 and pinned.json()["code"] == "model_version_unavailable"
        v2 = next(v for v in client.get("/v1/models/iris").json()["versions"] if v["version"] == 2)
        assert v2["loaded_on"] == [] and "sha256 mismatch" in next(iter(v2["load_errors"].values()))
    assert "model.load_failed model=iris version=2" in stack.log("worker")
