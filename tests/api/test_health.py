import shutil

import httpx
import pytest

from devtools.processes import running_stack
from shared.settings import REPO_ROOT
from tests.api.helpers import SETOSA

pytestmark = pytest.mark.integration


def test_liveness_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["degraded"] == [] and ready.json()["models"]["iris"] == {"status": "ready"}
    assert ready.json()["queues"]["cpu"]


def test_openapi_documents_the_job_routes(client):
    spec = client.get("/openapi.json").json()
    create = spec["paths"]["/v1/models/{model}/jobs"]["post"]
    assert "application/json" in create["requestBody"]["content"]
    assert {"200", "202"} <= set(create["responses"])
    assert spec["paths"]["/v1/jobs/{job_id}"]["get"]["summary"]


def test_one_broken_model_degrades_readiness_but_keeps_the_replica_in_service(tmp_path):
    """A model that fails to load made /readyz 503 for the whole API, pulling replicas that serve
    every other model out of a load balancer. Now: 200 ``degraded``, the broken model named, its
    jobs a 503 ``model_unavailable`` with Retry-After, the others served."""
    models = tmp_path / "models"
    for name in ("iris", "wine"):
        shutil.copytree(REPO_ROOT / "models" / name, models / name)
    (models / "wine" / "1" / "model.joblib").write_bytes(b"not the artifact the manifest names")
    with running_stack(tmp_path, models_dir=str(models)) as stack, httpx.Client(base_url=stack.api_url) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "degraded" and body["degraded"] == ["wine"] and body["problems"] == []
        assert body["models"]["iris"] == {"status": "ready"}
        assert body["models"]["wine"]["status"] == "failed"
        assert "sha256" in next(iter(body["models"]["wine"]["errors"].values()))
        served = client.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=30"})
        assert served.status_code == 200 and served.json()["status"] == "succeeded"
        refused = client.post("/v1/models/wine/jobs", json={"input": [13.0] * 13})
        assert refused.status_code == 503 and refused.json()["code"] == "model_unavailable"
        assert int(refused.headers["retry-after"]) >= 1
