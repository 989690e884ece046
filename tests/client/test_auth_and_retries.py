"""Against a stack with API keys and a tiny rate limit: a key made by `mlqueue keys create` is
accepted, auth failures get exit code 4, and a 429 is retried after its Retry-After without a
second job being made."""

from __future__ import annotations

import time

import httpx
import pytest

import mlqueue
from devtools.processes import running_stack
from mlqueue import Client, create_key
from tests.client.helpers import parse_key_output, run_cli

pytestmark = pytest.mark.integration

KEYS = {name: create_key(name, scopes) for name, scopes in {"retry": ["submit", "read"], "reader": ["read"]}.items()}


@pytest.fixture(scope="module")
def cli_key() -> tuple[str, str]:
    made = run_cli("keys", "create", "cli", "--scopes", "submit,read")
    assert made.returncode == 0, made.stderr
    return parse_key_output(made.stdout)


@pytest.fixture(scope="module")
def secured(tmp_path_factory, cli_key):
    entries = ",".join([cli_key[1], *(entry for _, entry in KEYS.values())])
    with running_stack(tmp_path_factory.mktemp("client-secured"), api_keys=entries, rate_limit="2/second") as s:
        yield s


class Recorder(httpx.HTTPTransport):
    """Every request the client really sends, with when, its idempotency key and the answer."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[float, str, str | None, int, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        key, retry_after = request.headers.get("idempotency-key"), response.headers.get("retry-after")
        self.log.append((time.monotonic(), request.method, key, response.status_code, retry_after))
        return response


def test_the_cli_with_a_key_it_made_is_let_in_and_auth_failures_exit_4(secured, cli_key):
    ok = run_cli("predict", "iris", "5.1", "3.5", "1.4", "0.2", url=secured.api_url, api_key=cli_key[0])
    assert ok.returncode == 0 and "label: setosa" in ok.stdout, ok.stderr
    anonymous = run_cli("predict", "iris", "5.1", "3.5", "1.4", "0.2", url=secured.api_url)
    assert anonymous.returncode == 4 and "(401 unauthorized)" in anonymous.stderr
    assert "MLQUEUE_API_KEY" in anonymous.stderr  # the hint says how to pass one
    forged = run_cli("jobs", url=secured.api_url, api_key="mlq_cli_" + "x" * 43)
    assert forged.returncode == 4 and "invalid_api_key" in forged.stderr
    reader = run_cli("predict", "iris", "5.1", "3.5", "1.4", "0.2", url=secured.api_url, api_key=KEYS["reader"][0])
    assert reader.returncode == 4 and "insufficient_scope" in reader.stderr
    assert run_cli("models", url=secured.api_url, api_key=KEYS["reader"][0]).returncode == 0


def test_429_is_retried_after_retry_after_with_the_same_idempotency_key(secured):
    recorder = Recorder()
    calls = 6
    with Client(secured.api_url, KEYS["retry"][0], transport=recorder) as mlq:
        jobs = [mlq.submit("iris", [5.0 + i / 10, 3.4, 1.5, 0.2]) for i in range(calls)]
        listed = mlq.jobs(limit=100)
    submits = [entry for entry in recorder.log if entry[1] == "POST"]
    refused = [i for i, entry in enumerate(submits) if entry[3] == 429]
    assert refused, "the rate limit never answered 429: the test proves nothing"
    for i in refused:
        at, _, key, _, retry_after = submits[i]
        retried_at, _, retry_key, _, _ = submits[i + 1]
        assert retry_key == key and retried_at - at >= float(retry_after) - 0.05
    assert len({entry[2] for entry in submits}) == calls  # one key per call, shared by its retries
    assert len(submits) == calls + len(refused)
    # Every call made exactly one job, and the key owns nothing else.
    assert sorted(j.id for j in listed) == sorted(j.id for j in jobs) and len(set(j.id for j in jobs)) == calls


def test_without_retries_a_429_raises_rate_limited_with_its_retry_after(secured):
    with Client(secured.api_url, KEYS["reader"][0], retries=0) as mlq, pytest.raises(mlqueue.RateLimited) as e:
        for _ in range(10):
            mlq.models()
    assert e.value.status == 429 and e.value.code == "rate_limited" and e.value.retry_after >= 1
