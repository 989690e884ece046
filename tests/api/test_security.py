"""API keys, scopes, job ownership and rate limits, through HTTP against a stack with keys configured.
What needs no worker (401/403, per-key idempotency, failed-auth limits) is tests/fast/test_security.py."""

import subprocess
import sys

import httpx
import pytest

from api.ratelimit import Limit
from api.security import Scope, generate_key, parse_api_keys
from devtools.processes import running_stack
from shared.settings import REPO_ROOT
from tests.api.helpers import SETOSA

pytestmark = pytest.mark.integration

KEYS = {
    name: generate_key(name, scopes)
    for name, scopes in {
        "alice": [Scope.SUBMIT, Scope.READ],
        "bob": [Scope.SUBMIT, Scope.READ],
        "reader": [Scope.READ],
        "ops": [Scope.ADMIN],
    }.items()
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    keys = ",".join(entry for _, entry in KEYS.values())
    with running_stack(
        tmp_path_factory.mktemp("secured"),
        api_keys=keys,
        rate_limit="40/minute",
        batch_rate_limit="2/minute",
        auth_failure_limit="10/minute",
    ) as s:
        yield s


def as_(stack, name=None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {KEYS[name][0]}"} if name else {}
    return httpx.Client(base_url=stack.api_url, headers=headers, timeout=30)


def test_a_job_is_visible_only_to_its_key_and_admins(secured):
    with as_(secured, "alice") as alice, as_(secured, "bob") as bob, as_(secured, "ops") as ops:
        job = alice.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=10"}).json()
        assert alice.get(f"/v1/jobs/{job['id']}").json()["output"]["label"] == "setosa"
        for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/events"):
            assert bob.get(path).status_code == 404
        assert bob.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
        assert job["id"] not in [j["id"] for j in bob.get("/v1/jobs").json()["jobs"]]
        assert job["id"] in [j["id"] for j in alice.get("/v1/jobs").json()["jobs"]]
        assert ops.get(f"/v1/jobs/{job['id']}").status_code == 200
        assert job["id"] in [j["id"] for j in ops.get("/v1/jobs", params={"limit": 100}).json()["jobs"]]
        assert ops.post("/v1/models/iris/reload").json()["status"] == "loaded"


def test_rate_limits_answer_429_with_retry_after_and_survive_a_redis_restart(secured):
    rows = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
    with as_(secured, "bob") as bob, as_(secured, "reader") as reader:
        statuses = [bob.post("/v1/models/iris/batches", json=rows) for _ in range(3)]
        assert [r.status_code for r in statuses] == [202, 202, 429]
        limited = statuses[-1]
        assert limited.json()["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
        assert limited.headers["ratelimit-policy"] == "2;w=60"
        assert bob.post("/v1/models/iris/jobs", json={"input": SETOSA}).status_code == 202  # other limit
        ok = reader.get("/v1/models")
        assert int(ok.headers["ratelimit-limit"]) == 40 and int(ok.headers["ratelimit-remaining"]) >= 0
        answers = [reader.get("/v1/models").status_code for _ in range(45)]
        assert 429 in answers and answers.index(429) > 20
        secured.redis.restart()  # scripts are gone: NOSCRIPT must be handled, never a 500
        secured.wait_ready(timeout_s=60)
        with as_(secured, "alice") as alice:
            assert alice.post("/v1/models/iris/jobs", json={"input": SETOSA}).status_code == 202


def test_parsing_and_the_key_command():
    _, entry = generate_key("ci", [Scope.SUBMIT])
    (parsed,) = parse_api_keys(entry).values()
    assert parsed.name == "ci" and parsed.scopes == {Scope.SUBMIT}
    for bad in ("ci=abc:submit", "=" + "a" * 64 + ":read", "ci=" + "a" * 64 + ":root"):
        with pytest.raises(ValueError):
            parse_api_keys(bad)
    assert Limit.parse("600/minute") == Limit(600, 60)
    for bad in ("600", "0/minute", "5/fortnight"):
        with pytest.raises(ValueError):
            Limit.parse(bad)
    out = subprocess.run(
        [sys.executable, "-m", "api.keys", "ops", "--scopes", "admin"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    printed_key = out.split("keep it secret):")[1].split()[0]
    entry = out.strip().splitlines()[-1].strip()
    assert printed_key.startswith("mlq_ops_") and entry.startswith("ops=") and entry.endswith(":admin")


def test_a_read_key_is_a_read_only_view_over_every_job(secured):
    """A ``read`` key without ``submit`` could create no job and saw only its own: it saw nothing.
    It now reads and lists every key's jobs, and still cannot cancel, reload or create."""
    with as_(secured, "alice") as alice, as_(secured, "reader") as reader:
        job = alice.post("/v1/models/iris/jobs", json={"input": SETOSA}, headers={"Prefer": "wait=10"}).json()
        read = reader.get(f"/v1/jobs/{job['id']}")
        assert read.status_code == 200 and read.json()["output"]["label"] == "setosa"
        assert job["id"] in [j["id"] for j in reader.get("/v1/jobs", params={"limit": 100}).json()["jobs"]]
        with reader.stream("GET", f"/v1/jobs/{job['id']}/events") as events:
            assert events.status_code == 200
        queued = alice.post("/v1/models/iris/jobs", json={"input": SETOSA}).json()
        for path in (
            f"/v1/jobs/{queued['id']}/cancel",
            "/v1/models/iris/reload",
            f"/v1/jobs/{job['id']}/webhook/redeliver",
        ):
            response = reader.post(path)
            assert response.status_code == 403 and response.json()["code"] == "insufficient_scope", path
