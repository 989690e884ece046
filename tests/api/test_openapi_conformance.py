"""Schemathesis against the live stack: every operation in ``/openapi.json`` is fuzzed (bounded and
deterministic) and every answer must be documented: no 5xx, status codes, content types, headers
and bodies as the document says."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.main import create_app
from api.security import Scope, generate_key
from devtools.processes import running_stack
from shared.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

# One key with every scope, so authorized paths (admin routes too) are exercised, not just the 401s.
KEY, KEY_ENTRY = generate_key("fuzz", [Scope.SUBMIT, Scope.READ, Scope.ADMIN])


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # schemathesis sends hundreds of requests with a wrong or no key, on purpose: lift the limit on
    # failed authentications (tested in test_security.py), or they become 429s the check refuses
    tmp = tmp_path_factory.mktemp("conformance")
    models = shutil.copytree(REPO_ROOT / "models", tmp / "models")  # fuzzed alias calls write there
    settings = {"api_keys": KEY_ENTRY, "auth_failure_limit": "1000000/minute", "models_dir": str(models)}
    with running_stack(tmp, **settings) as stack:
        yield stack.api_url


# Cases are generated at collection time, before any stack runs, from the document the app builds;
# ``test_the_live_document_is_the_one_fuzzed`` checks the running API serves exactly this one.
# (schemathesis's lazy ``from_fixture`` loader does not work with pytest 9: it sets ``node._nodeid``.)
DOCUMENT = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(
    # Reload makes every worker load its models again and waits up to 120 s for them: it would
    # reshape the stack under the other cases and spend the time budget on one call.
    path="/v1/models/{model}/reload",
)
schema.config.update(headers={"Authorization": f"Bearer {KEY}"})


def test_the_live_document_is_the_one_fuzzed(live_api: str) -> None:
    assert httpx.get(f"{live_api}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=30,
    derandomize=True,  # the same cases on every run: a failure here is reproducible, not flaky
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_answer_is_documented(case: Case, live_api: str) -> None:
    # Every check schemathesis has (5xx, status codes, content types, headers, bodies, auth, negative
    # data rejected, 405s) but one: "schema-valid data is accepted" cannot hold here, since a request
    # is also checked against the model's own input schema (``GET /v1/models/{model}``), the body
    # limits and positive durations, so a schema-valid request can rightly be a 400, 413 or 422.
    case.call_and_validate(base_url=live_api, timeout=20, excluded_checks=[positive_data_acceptance])


def refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_document_resolves_and_declares_errors_and_auth() -> None:
    components = DOCUMENT["components"]
    for ref in refs(DOCUMENT):  # a client generator stops at the first dangling one
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in components["schemas"], ref
    assert components["securitySchemes"]["ApiKey"]["scheme"] == "bearer"  # Authorization: Bearer <key>
    create = DOCUMENT["paths"]["/v1/models/{model}/jobs"]["post"]
    assert create["security"] == [{"ApiKey": []}]
    assert {"400", "401", "403", "404", "409", "413", "415", "422", "429", "503"} <= set(create["responses"])
    error = create["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in components["schemas"]
    assert "security" not in DOCUMENT["paths"]["/healthz"]["get"]  # ops endpoints stay open
