"""Aliases and traffic split through HTTP, on a stack whose model repository is ``s3://`` (a real
S3-compatible server on loopback): admin-only changes, jobs asking for an alias, unpinned jobs
following ``production``, a 10 % canary and its rollback in one call."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from api.security import Scope, generate_key
from devtools.processes import running_stack
from shared.manifests import ModelRepository
from tests.api.helpers import SETOSA
from training import iris
from training.publish import publish

pytestmark = [pytest.mark.integration]

ADMIN, ADMIN_ENTRY = generate_key("ops", [Scope.ADMIN, Scope.SUBMIT, Scope.READ])
USER, USER_ENTRY = generate_key("app", [Scope.SUBMIT, Scope.READ])


@pytest.fixture(scope="module")
def rollout_stack(tmp_path_factory, s3_server):
    tmp = tmp_path_factory.mktemp("rollout")
    bucket = "mlqueue-rollout"
    ModelRepository(f"s3://{bucket}", endpoint_url=s3_server.endpoint_url).store.fs.mkdir(bucket)
    url = f"s3://{bucket}/models"
    for version in (1, 2, 3):
        iris.train(tmp / "trained", version)
        publish(tmp / "trained" / "iris" / str(version), url, s3_server.endpoint_url)
    with running_stack(
        tmp,
        models_url=url,
        s3_endpoint_url=s3_server.endpoint_url,
        model_cache_dir=str(tmp / "cache"),
        api_keys=f"{ADMIN_ENTRY},{USER_ENTRY}",
    ) as s:
        yield s


@pytest.fixture
def admin(rollout_stack):
    with httpx.Client(base_url=rollout_stack.api_url, timeout=60, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c
        # every test starts from no aliases, no split
        routing = c.get("/v1/models/iris").json()
        c.post("/v1/models/iris/traffic", json={"weights": {}})
        for alias in routing["aliases"]:
            c.delete(f"/v1/models/iris/aliases/{alias}")


@pytest.fixture
def user(rollout_stack):
    with httpx.Client(base_url=rollout_stack.api_url, timeout=60, headers={"Authorization": f"Bearer {USER}"}) as c:
        yield c


def submit(client, **body):
    return client.post("/v1/models/iris/jobs", json={"input": SETOSA, **body})


def test_aliases_are_set_by_admins_shown_on_the_model_and_asked_for_by_jobs(admin, user):
    assert user.post("/v1/models/iris/aliases/staging", json={"version": 2}).status_code == 403
    response = admin.post("/v1/models/iris/aliases/staging", json={"version": 2})
    assert response.status_code == 200 and response.json()["aliases"] == {"staging": 2}
    model = user.get("/v1/models/iris").json()
    assert model["aliases"] == {"staging": 2} and model["traffic"] == {}
    assert {v["version"]: v["aliases"] for v in model["versions"]} == {3: [], 2: ["staging"], 1: []}
    job = submit(user, version="staging").json()
    assert job["version"] == 2  # the job keeps the number it resolved to
    assert user.get(f"/v1/jobs/{job['id']}").json()["version"] == 2
    assert submit(user).json()["version"] == 3  # no production alias: the newest


def test_unpinned_jobs_follow_production(admin, user):
    admin.post("/v1/models/iris/aliases/production", json={"version": 1}).raise_for_status()
    assert {submit(user).json()["version"] for _ in range(20)} == {1}
    admin.post("/v1/models/iris/aliases/production", json={"version": 3}).raise_for_status()  # promote
    assert {submit(user).json()["version"] for _ in range(20)} == {3}


def test_bad_aliases_and_splits_are_refused(admin, user):
    cases = [
        (admin.post("/v1/models/iris/aliases/9lives", json={"version": 1}), 422, "invalid_alias"),
        (admin.post(f"/v1/models/iris/aliases/{'a' * 65}", json={"version": 1}), 422, "invalid_alias"),
        (admin.post("/v1/models/iris/aliases/staging", json={"version": 9}), 404, "model_version_not_found"),
        (admin.post("/v1/models/iris/aliases/staging", json={"version": "2"}), 422, None),
        (admin.post("/v1/models/nope/aliases/staging", json={"version": 1}), 404, "model_not_found"),
        (admin.post("/v1/models/iris/traffic", json={"weights": {"ghost": 100}}), 422, "alias_not_found"),
        (admin.post("/v1/models/iris/traffic", json={"weights": {"production": 90}}), 422, None),
        (admin.delete("/v1/models/iris/aliases/ghost"), 404, "alias_not_found"),
        (submit(user, version="ghost"), 404, "alias_not_found"),
        (submit(user, version="no spaces"), 422, "invalid_request"),
        (submit(user, version="2"), 422, "invalid_request"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        if code:
            assert response.json()["code"] == code, response.text


def test_a_10_percent_canary_gets_10_percent_and_rolls_back_in_one_call(admin, user):
    admin.post("/v1/models/iris/aliases/production", json={"version": 1}).raise_for_status()
    admin.post("/v1/models/iris/aliases/candidate", json={"version": 3}).raise_for_status()
    split = admin.post("/v1/models/iris/traffic", json={"weights": {"production": 90, "candidate": 10}})
    assert split.status_code == 200 and split.json()["traffic"] == {"production": 90, "candidate": 10}
    assert admin.delete("/v1/models/iris/aliases/candidate").status_code == 409  # it carries traffic

    def versions(n: int) -> Counter:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: submit(user), range(n)))
        assert {r.status_code for r in responses} == {202}
        return Counter(r.json()["version"] for r in responses)

    counts = versions(2000)
    share = counts[3] / 2000
    print(f"canary share over 2000 unpinned jobs: {share:.2%} ({dict(counts)})")
    assert set(counts) == {1, 3} and 0.07 <= share <= 0.13
    rollback = admin.post("/v1/models/iris/traffic", json={"weights": {"production": 100}})
    assert rollback.status_code == 200
    assert versions(200) == Counter({1: 200})
