import pytest

pytestmark = pytest.mark.integration


def test_liveness_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["queues"]["cpu"]


def test_openapi_documents_the_job_routes(client):
    spec = client.get("/openapi.json").json()
    create = spec["paths"]["/v1/models/{model}/jobs"]["post"]
    assert "application/json" in create["requestBody"]["content"]
    assert {"200", "202"} <= set(create["responses"])
    assert spec["paths"]["/v1/jobs/{job_id}"]["get"]["summary"]
