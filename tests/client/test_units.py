"""What the client does on its own, without a server: keys in the server's format, webhook
signatures, SSE parsing, CSV rows mapped to features, and its retry policy (on a mock transport)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

import mlqueue
from mlqueue import tabular
from mlqueue.jobs import SseParser
from shared.settings import REPO_ROOT
from tests.client.helpers import parse_key_output, run_cli

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _shape(text: str) -> str:
    return re.sub(r"=[0-9a-f]{64}:", "=<sha256>:", re.sub(r"mlq_(\w+?)_[A-Za-z0-9_-]{43}", r"mlq_\1_<secret>", text))


def test_keys_create_prints_exactly_what_the_servers_tool_prints():
    ours = run_cli("keys", "create", "ci", "--scopes", "submit,read")
    server_tool = [sys.executable, "-m", "api.keys", "ci", "--scopes", "submit,read"]
    theirs = subprocess.run(server_tool, cwd=REPO_ROOT, capture_output=True, text=True)
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    assert _shape(ours.stdout) == _shape(theirs.stdout)
    key, entry = parse_key_output(ours.stdout)
    assert entry == f"ci={hashlib.sha256(key.encode()).hexdigest()}:submit|read"
    bad = run_cli("keys", "create", "ci", "--scopes", "submit,root")
    assert bad.returncode == 2 and "scopes must be some of submit, read, admin" in bad.stderr
    assert run_cli("keys", "create", "no spaces").returncode == 2


def test_verify_webhook_accepts_a_signed_body_and_refuses_a_tampered_or_stale_one():
    body = json.dumps({"type": "job.completed", "timestamp": "now", "data": {"id": "J", "status": "succeeded"}})

    def headers(at: datetime, payload: str) -> dict[str, str]:
        signature = Webhook(SECRET).sign("msg_1", at, payload)
        return {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(int(at.timestamp())), "Webhook-Signature": signature}

    now = datetime.now(UTC)
    assert mlqueue.verify_webhook(headers(now, body), body.encode(), SECRET)["data"]["status"] == "succeeded"
    with pytest.raises(mlqueue.InvalidSignature):
        mlqueue.verify_webhook(headers(now, body), body.replace("succeeded", "failed"), SECRET)
    with pytest.raises(mlqueue.InvalidSignature):
        mlqueue.verify_webhook(headers(now - timedelta(minutes=10), body), body, SECRET)


def test_sse_parser_yields_events_and_skips_keepalives():
    parser = SseParser()
    lines = ["id: 3", "event: progress", 'data: {"id": "J", "status": "running"}', "", ": keep-alive", ""]
    events = [e for e in map(parser.feed, lines) if e]
    assert len(events) == 1 and events[0].type == "progress" and events[0].id == 3 and events[0].job["id"] == "J"


def test_csv_header_maps_columns_to_features_in_the_models_order(tmp_path: Path):
    path = tmp_path / "rows.csv"
    path.write_text("id,petal_width,petal_length,sepal_width,sepal_length\n7,0.2,1.4,3.5,5.1\n8,x,1,1,1\n")
    features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert tabular.read_rows(path, features) == [[5.1, 3.5, 1.4, 0.2], [1.0, 1.0, 1.0, "x"]]
    with pytest.raises(ValueError, match="no column for sepal_length_cm"):
        tabular.read_rows(path, ["sepal_length_cm", *features[1:]])
    headless = tmp_path / "plain.csv"
    headless.write_text("5.1,3.5,1.4,0.2\n")
    assert tabular.read_rows(headless, features) == [[5.1, 3.5, 1.4, 0.2]]


def test_json_lines_rows_go_as_they_are_and_outputs_flatten_to_columns(tmp_path: Path):
    path = tmp_path / "rows.jsonl"
    path.write_text('[5.1, 3.5, 1.4, 0.2]\n\n{"sepal_length": 6.7}\n')
    assert tabular.read_rows(path, ["sepal_length"]) == [[5.1, 3.5, 1.4, 0.2], {"sepal_length": 6.7}]
    output = {"label": "setosa", "class_index": 0, "probabilities": {"setosa": 0.98, "versicolor": 0.02}}
    assert tabular.flatten(output) == {
        "label": "setosa",
        "class_index": 0,
        "probabilities.setosa": 0.98,
        "probabilities.versicolor": 0.02,
    }


def test_keys_create_with_queue_options_prints_what_the_servers_tool_prints():
    options = ["--weight", "3", "--priority", "low", "--max-priority", "normal"]
    ours = run_cli("keys", "create", "etl", *options)
    server_tool = [sys.executable, "-m", "api.keys", "etl", *options]
    theirs = subprocess.run(server_tool, cwd=REPO_ROOT, capture_output=True, text=True)
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    assert _shape(ours.stdout) == _shape(theirs.stdout)
    assert parse_key_output(ours.stdout)[1].endswith(":submit|read;weight=3;priority=low;max_priority=normal")
    for bad, message in [
        (["--weight", "0"], "weight must be a number from 0.01 to 1000"),
        (["--weight", "lots"], "weight must be a number"),
        (["--priority", "high", "--max-priority", "low"], "must not be above its max_priority"),
        (["--priority", "urgent"], "invalid choice"),
    ]:
        refused = run_cli("keys", "create", "etl", *bad)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    with pytest.raises(ValueError, match="priority must be one of high, normal, low"):
        mlqueue.create_key("etl", ["submit"], priority="urgent")


def _answers(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[float]]:
    """A transport that answers in turn, noting when each request came (the retry policy alone)."""
    pending, seen = list(responses), []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return pending.pop(0)

    return httpx.MockTransport(handle), seen


def test_a_503_queue_full_waits_its_retry_after_and_a_long_one_is_raised_at_once():
    body = {"detail": "queue cpu is full", "code": "queue_full"}
    transport, seen = _answers(
        httpx.Response(503, json=body, headers={"Retry-After": "1"}), httpx.Response(200, json={"models": []})
    )
    with mlqueue.Client("http://api", transport=transport) as mlq:
        assert mlq.models() == []
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.95
    transport, seen = _answers(httpx.Response(503, json=body, headers={"Retry-After": "600"}))
    with mlqueue.Client("http://api", transport=transport) as mlq, pytest.raises(mlqueue.Unavailable) as full:
        mlq.models()
    assert len(seen) == 1 and full.value.code == "queue_full" and full.value.retry_after == 600


def test_a_retry_whose_answer_was_lost_is_not_sent_twice():
    calls: list[str] = []

    def lose(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ReadError("reset after the request was sent", request=request)

    client = mlqueue.Client("http://api", transport=httpx.MockTransport(lose))
    with client as mlq, pytest.raises(mlqueue.ConnectionFailed):
        mlq.retry("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert calls == ["/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/retry"]
