"""A hostile-input corpus: each row one request a careless or malicious client might send, with the
exact status and error code the HTTP contract says it gets (400 bad content, 404 unknown, 413 too
large, 415 media type, 422 schema). Never a 500, never a hang.

In process, with no worker: the API answers every row alone (a well-formed job stays queued). The
app has a webhook secret (so webhook URLs reach the SSRF guard rather than "webhooks are not
configured"), a 2 MiB body cap and 1,000-row batches, so the size rows are cheap. Through the real
server and after a worker ran a job: tests/api/test_hostile_inputs.py.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
from PIL import Image

from shared.jobs import new_job_id
from shared.redis_keys import deliveries_key
from tests.api.helpers import SETOSA
from tests.fast.conftest import ApiFactory
from tests.webhook_receiver import new_secret

pytestmark = [
    pytest.mark.anyio,
    # A multipart upload's SpooledTemporaryFile is left for the garbage collector to close (in the
    # app, not the test: under uvicorn it is as silent); in process, pytest sees the collection.
    pytest.mark.filterwarnings("ignore:Exception ignored in. <function SpooledTemporaryFile.__del__"),
]

MAX_BODY = 2 * 1024 * 1024
MAX_ROWS = 1000
ROW = [5.1, 3.5, 1.4, 0.2]
JOB = new_job_id()  # well-formed, never created


def png(width: int = 32, height: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (a decompression-bomb header), no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def raw(content: str | bytes, content_type: str | None = "application/json") -> dict[str, Any]:
    return {"content": content, "headers": {"content-type": content_type} if content_type else {}}


def body(**fields: Any) -> dict[str, Any]:
    return {"json": {"input": SETOSA, **fields}}


def with_input(value: Any) -> dict[str, Any]:
    return {"json": {"input": value}}


def headers(**values: str) -> dict[str, Any]:
    return {"json": {"input": SETOSA}, "headers": {k.replace("_", "-"): v for k, v in values.items()}}


def upload(data: bytes, name: str = "x.png", **fields: str) -> dict[str, Any]:
    return {"files": {"file": (name, data)}, "data": fields}


IRIS, DIGITS = "/v1/models/iris/jobs", "/v1/models/digits/jobs"
BIG_INT = "9" * 400

# (id, method, path, request kwargs, status, code); code None: a success, no error body
CASES: list[tuple[str, str, str, dict[str, Any], int, str | None]] = [
    # images
    ("png-truncated", "POST", DIGITS, upload(png()[:60]), 400, "corrupt_image"),
    ("png-wrong-magic", "POST", DIGITS, upload(b"\x89PNX\r\n\x1a\n" + png()[8:]), 415, "unsupported_image_format"),
    ("png-zero-bytes", "POST", DIGITS, upload(b""), 400, "empty_image"),
    ("png-huge-dimensions", "POST", DIGITS, upload(png_header(100_000, 100_000)), 413, "image_too_large"),
    ("text-named-png", "POST", DIGITS, upload(b"hello, I am a text file\n" * 10), 415, "unsupported_image_format"),
    (
        "two-files-for-one-job",
        "POST",
        DIGITS,
        {"files": [("file", ("a.png", png())), ("file", ("b.png", png()))]},
        400,
        "invalid_multipart",
    ),
    ("file-under-other-name", "POST", DIGITS, {"files": {"image": ("a.png", png())}}, 400, "invalid_multipart"),
    ("json-to-image-model", "POST", DIGITS, with_input([1, 2, 3]), 415, "image_required"),
    ("image-to-json-model", "POST", IRIS, upload(png()), 415, "json_required"),
    # JSON bodies
    ("not-json", "POST", IRIS, raw('{"input": [1, 2'), 400, "invalid_json"),
    ("empty-body", "POST", IRIS, raw(""), 400, "invalid_json"),
    ("binary-as-json", "POST", IRIS, raw(png()), 400, "invalid_json"),
    ("nesting-10000", "POST", IRIS, raw('{"input": ' + "[" * 10_000 + "]" * 10_000 + "}"), 400, "invalid_json"),
    ("int-400-digits", "POST", IRIS, raw('{"input": [' + BIG_INT + ", 3.5, 1.4, 0.2]}"), 422, "invalid_input"),
    ("int-400-digits-named", "POST", IRIS, with_input({**SETOSA, "sepal_width": int(BIG_INT)}), 422, "invalid_input"),
    ("int-5000-digits", "POST", IRIS, raw('{"input": [' + "9" * 5000 + ", 3.5, 1.4, 0.2]}"), 400, "invalid_json"),
    ("nan-literal", "POST", IRIS, raw('{"input": [NaN, 3.5, 1.4, 0.2]}'), 422, "invalid_input"),
    ("infinity-literal", "POST", IRIS, raw('{"input": [5.1, Infinity, 1.4, 0.2]}'), 422, "invalid_input"),
    ("minus-infinity", "POST", IRIS, raw('{"input": [5.1, 3.5, -Infinity, 0.2]}'), 422, "invalid_input"),
    ("float-overflow", "POST", IRIS, raw('{"input": [1e400, 3.5, 1.4, 0.2]}'), 422, "invalid_input"),
    ("string-for-number", "POST", IRIS, with_input({**SETOSA, "petal_length": "1.4"}), 422, "invalid_input"),
    ("bool-for-number", "POST", IRIS, with_input([True, 3.5, 1.4, 0.2]), 422, "invalid_input"),
    ("object-for-number", "POST", IRIS, with_input([{"v": 1}, 3.5, 1.4, 0.2]), 422, "invalid_input"),
    ("extra-top-level-field", "POST", IRIS, body(urgency="high"), 422, "invalid_request"),
    ("extra-feature", "POST", IRIS, with_input({**SETOSA, "colour": 1}), 422, "invalid_input"),
    ("missing-input", "POST", IRIS, {"json": {"version": 1}}, 422, "invalid_request"),
    ("array-too-short", "POST", IRIS, with_input([5.1, 3.5, 1.4]), 422, "invalid_input"),
    ("array-too-long", "POST", IRIS, with_input([*ROW, 1.0]), 422, "invalid_input"),
    ("input-null", "POST", IRIS, with_input(None), 422, "invalid_input"),
    ("body-null", "POST", IRIS, raw("null"), 422, "invalid_request"),
    ("top-level-array", "POST", IRIS, raw(json.dumps(ROW)), 422, "invalid_request"),
    ("top-level-string", "POST", IRIS, raw('"input"'), 422, "invalid_request"),
    ("string-1mb", "POST", IRIS, with_input({**SETOSA, "sepal_length": "x" * 1_000_000}), 422, "invalid_input"),
    ("key-1mb", "POST", IRIS, with_input({**SETOSA, "k" * 1_000_000: 1}), 422, "invalid_input"),
    ("unicode-escape-key", "POST", IRIS, raw('{"input": {"sepal_length\\u0000": 5.1}}'), 422, "invalid_input"),
    ("lone-surrogate", "POST", IRIS, raw('{"input": ["\\ud800", 3.5, 1.4, 0.2]}'), 422, "invalid_input"),
    # the last of duplicate keys wins (as in every JSON parser here): this body is a valid job
    ("duplicate-keys", "POST", IRIS, raw('{"input": "x", "input": [5.1, 3.5, 1.4, 0.2]}'), 202, None),
    ("version-string", "POST", IRIS, body(version="1"), 422, "invalid_request"),
    ("version-bool", "POST", IRIS, body(version=True), 422, "invalid_request"),
    ("version-float", "POST", IRIS, body(version=1.0), 422, "invalid_request"),
    ("version-zero", "POST", IRIS, body(version=0), 422, "invalid_request"),
    (
        "version-huge",
        "POST",
        IRIS,
        raw('{"input": [5.1, 3.5, 1.4, 0.2], "version": ' + BIG_INT + "}"),
        422,
        "invalid_request",
    ),
    ("version-unknown", "POST", IRIS, body(version=99), 404, "model_version_not_found"),
    ("events-filter-bogus", "POST", IRIS, body(webhook_events_filter=["job.exploded"]), 422, "invalid_request"),
    (
        "observation-id-long",
        "POST",
        "/v1/models/anomaly/jobs",
        with_input({"observation_id": "o" * 300}),
        422,
        "invalid_input",
    ),
    # headers
    (
        "content-type-lies-text",
        "POST",
        IRIS,
        raw(json.dumps({"input": ROW}), "text/plain"),
        415,
        "unsupported_media_type",
    ),
    ("content-type-absent", "POST", IRIS, raw(json.dumps({"input": ROW}), None), 415, "unsupported_media_type"),
    (
        "content-type-multipart-no-boundary",
        "POST",
        IRIS,
        raw(json.dumps({"input": ROW}), "multipart/form-data"),
        400,
        "invalid_multipart",
    ),
    ("prefer-wait-5000-digits", "POST", IRIS, headers(Prefer="wait=" + "9" * 5000), 202, None),
    ("prefer-wait-exponent", "POST", IRIS, headers(Prefer="wait=1e9"), 202, None),
    ("prefer-wait-negative", "POST", IRIS, headers(Prefer="wait=-5"), 202, None),
    ("prefer-garbage", "POST", IRIS, headers(Prefer=";;==,,wait"), 202, None),
    ("cancel-after-huge-days", "POST", IRIS, headers(Cancel_After="99999999999999d"), 400, "invalid_header"),
    ("cancel-after-400-nines", "POST", IRIS, headers(Cancel_After="9" * 400), 400, "invalid_header"),
    ("cancel-after-past-ttl", "POST", IRIS, headers(Cancel_After="2d"), 400, "invalid_header"),
    ("cancel-after-zero", "POST", IRIS, headers(Cancel_After="0s"), 400, "invalid_header"),
    ("cancel-after-negative", "POST", IRIS, headers(Cancel_After="-5s"), 400, "invalid_header"),
    ("cancel-after-words", "POST", IRIS, headers(Cancel_After="soon"), 400, "invalid_header"),
    (
        "cancel-after-superscript",
        "POST",
        IRIS,
        {**headers(), "headers": {"Cancel-After": "²s".encode()}},
        400,
        "invalid_header",
    ),
    ("idempotency-key-too-long", "POST", IRIS, headers(Idempotency_Key="k" * 256), 400, "invalid_header"),
    ("idempotency-key-empty", "POST", IRIS, headers(Idempotency_Key=""), 400, "invalid_header"),
    (
        "idempotency-key-latin1",
        "POST",
        IRIS,
        {**headers(), "headers": {"Idempotency-Key": b"caf\xe9"}},
        400,
        "invalid_header",
    ),
    ("idempotency-key-control", "POST", IRIS, headers(Idempotency_Key="a\tb"), 400, "invalid_header"),
    # multipart
    ("multipart-no-file", "POST", DIGITS, {"files": {"version": (None, "1")}}, 422, "file_required"),
    ("multipart-unknown-field", "POST", DIGITS, upload(png(), colour="red"), 422, "invalid_request"),
    ("multipart-version-superscript", "POST", DIGITS, upload(png(), version="²"), 422, "invalid_request"),
    ("multipart-version-arabic", "POST", DIGITS, upload(png(), version="٣"), 422, "invalid_request"),
    ("multipart-version-5000-digits", "POST", DIGITS, upload(png(), version="9" * 5000), 422, "invalid_request"),
    ("multipart-version-negative", "POST", DIGITS, upload(png(), version="-1"), 422, "invalid_request"),
    ("multipart-version-zero", "POST", DIGITS, upload(png(), version="0"), 422, "invalid_request"),
    (
        "multipart-webhook-100kb",
        "POST",
        DIGITS,
        upload(png(), webhook="http://x.example/" + "a" * 100_000),
        422,
        "invalid_request",
    ),
    ("multipart-events-bogus", "POST", DIGITS, upload(png(), webhook_events_filter="job.nope"), 422, "invalid_request"),
    # job ids
    ("id-malformed", "GET", "/v1/jobs/not-a-job", {}, 404, "job_not_found"),
    ("id-deliveries-key", "GET", f"/v1/jobs/{JOB}:deliveries", {}, 404, "job_not_found"),
    ("id-lowercase", "GET", f"/v1/jobs/{JOB.lower()}", {}, 404, "job_not_found"),
    ("id-path-traversal", "GET", "/v1/jobs/..%2F..%2Fmetrics", {}, 404, "not_found"),
    ("id-10kb", "GET", "/v1/jobs/" + "A" * 10_000, {}, 404, "job_not_found"),
    ("id-unicode", "GET", "/v1/jobs/ÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉÉ", {}, 404, "job_not_found"),
    ("id-never-seen", "GET", f"/v1/jobs/{JOB}", {}, 404, "job_not_found"),
    ("results-malformed-id", "GET", f"/v1/jobs/{JOB}:x/results", {}, 404, "job_not_found"),
    ("events-malformed-id", "GET", "/v1/jobs/*/events", {}, 404, "job_not_found"),
    ("cancel-malformed-id", "POST", f"/v1/jobs/{JOB}:deliveries/cancel", {}, 404, "job_not_found"),
    ("redeliver-malformed-id", "POST", "/v1/jobs/x/webhook/redeliver", {}, 404, "job_not_found"),
    ("results-offset-huge", "GET", f"/v1/jobs/{JOB}/results?offset={BIG_INT}", {}, 422, "invalid_request"),
    ("list-cursor-malformed", "GET", "/v1/jobs?cursor=x:deliveries", {}, 422, "invalid_request"),
    ("list-cursor-5000", "GET", "/v1/jobs?cursor=" + "A" * 5000, {}, 422, "invalid_request"),
    ("list-limit-huge", "GET", f"/v1/jobs?limit={BIG_INT}", {}, 422, "invalid_request"),
    ("list-model-traversal", "GET", "/v1/jobs?model=../x", {}, 422, "invalid_request"),
    ("list-model-key-chars", "GET", "/v1/jobs?model=iris:o:alice", {}, 422, "invalid_request"),
    # model names
    ("model-unknown", "POST", "/v1/models/nope/jobs", body(), 404, "model_not_found"),
    # the client resolves the dot segment: this is POST /v1/jobs, a path that takes no POST
    ("model-dotdot", "POST", "/v1/models/../jobs", body(), 405, "method_not_allowed"),
    ("model-encoded-dotdot", "POST", "/v1/models/%2E%2E/jobs", body(), 404, "model_not_found"),
    ("model-1kb", "POST", "/v1/models/" + "m" * 1024 + "/jobs", body(), 404, "model_not_found"),
    ("model-unicode", "POST", "/v1/models/irís/jobs", body(), 404, "model_not_found"),
    ("model-key-chars", "POST", "/v1/models/iris:x/jobs", body(), 404, "model_not_found"),
    ("model-read-1kb", "GET", "/v1/models/" + "m" * 1024, {}, 404, "model_not_found"),
    ("model-reload-unknown", "POST", "/v1/models/n%C3%B6pe/reload", {}, 404, "model_not_found"),
    ("batch-model-unknown", "POST", "/v1/models/nope/batches", {"json": {"inputs": [ROW]}}, 404, "model_not_found"),
    # webhook URLs
    ("webhook-loopback", "POST", IRIS, body(webhook="http://127.0.0.1:8000/hook"), 422, "webhook_url_refused"),
    ("webhook-localhost", "POST", IRIS, body(webhook="http://localhost/hook"), 422, "webhook_url_refused"),
    ("webhook-private-10", "POST", IRIS, body(webhook="http://10.0.0.1/hook"), 422, "webhook_url_refused"),
    ("webhook-private-192", "POST", IRIS, body(webhook="https://192.168.1.1/hook"), 422, "webhook_url_refused"),
    (
        "webhook-metadata",
        "POST",
        IRIS,
        body(webhook="http://169.254.169.254/latest/meta-data"),
        422,
        "webhook_url_refused",
    ),
    ("webhook-ipv6-loopback", "POST", IRIS, body(webhook="http://[::1]/hook"), 422, "webhook_url_refused"),
    ("webhook-file", "POST", IRIS, body(webhook="file:///etc/passwd"), 422, "webhook_url_refused"),
    ("webhook-gopher", "POST", IRIS, body(webhook="gopher://example.com/"), 422, "webhook_url_refused"),
    ("webhook-userinfo", "POST", IRIS, body(webhook="http://user:pw@example.com/hook"), 422, "webhook_url_refused"),
    ("webhook-not-a-url", "POST", IRIS, body(webhook="not a url"), 422, "webhook_url_refused"),
    ("webhook-3kb", "POST", IRIS, body(webhook="https://example.com/" + "a" * 3000), 422, "invalid_request"),
    # sizes
    ("body-over-max", "POST", IRIS, raw('{"input": "' + "x" * MAX_BODY + '"}'), 413, "payload_too_large"),
    (
        "batch-over-max-rows",
        "POST",
        "/v1/models/iris/batches",
        {"json": {"inputs": [ROW] * (MAX_ROWS + 1)}},
        413,
        "batch_too_large",
    ),
    ("batch-empty", "POST", "/v1/models/iris/batches", {"json": {"inputs": []}}, 422, "invalid_request"),
    ("batch-not-a-list", "POST", "/v1/models/iris/batches", {"json": {"inputs": {"a": ROW}}}, 422, "invalid_request"),
]

ANSWERED: list[int] = []
SETTINGS = {"webhook_secret": new_secret(), "max_body_bytes": MAX_BODY, "max_batch_rows": MAX_ROWS}


@pytest.fixture
async def hostile(make_api: ApiFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_api(**SETTINGS) as api:
        yield api


def test_the_corpus_is_large_and_named_once():
    assert len(CASES) >= 60 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_a_hostile_request_gets_its_exact_answer(hostile, method, path, kwargs, status, code):
    response = await hostile.request(method, path, **kwargs)
    ANSWERED.append(response.status_code)
    assert response.status_code == status, response.text[:500]
    if code is not None:
        assert response.json()["code"] == code, response.text[:500]
        assert len(response.text) < 2000, "an error echoes at most a bounded piece of the input"


async def test_an_id_that_names_another_key_never_reaches_redis(hostile, fast_settings):
    """``{id}:deliveries`` is the key of a job's webhook log, a list: read as a job hash it was a
    WRONGTYPE 500 on every route with an id."""
    job = (await hostile.post(IRIS, json={"input": SETOSA})).json()
    delivery = json.dumps({"webhook_id": "msg_1", "event": "job.completed", "attempt": 1, "at": "2026-01-01T00:00:00Z"})
    redis.Redis.from_url(fast_settings.redis_url).rpush(deliveries_key(job["id"]), delivery)
    for method, suffix in (("GET", ""), ("GET", "/results"), ("GET", "/events"), ("POST", "/cancel")):
        response = await hostile.request(method, f"/v1/jobs/{job['id']}:deliveries{suffix}")
        ANSWERED.append(response.status_code)
        assert response.status_code == 404 and response.json()["code"] == "job_not_found", (suffix, response.text)
    assert (await hostile.get(f"/v1/jobs/{job['id']}")).json()["status"] == "queued"


async def test_after_the_corpus_nothing_answered_5xx_and_the_api_still_serves(hostile):
    assert ANSWERED and not [s for s in ANSWERED if s >= 500]
    response = await hostile.post(IRIS, json={"input": SETOSA})
    assert response.status_code == 202 and response.json()["status"] == "queued"
    listed = await hostile.get("/v1/jobs", params={"limit": 100})
    assert listed.status_code == 200 and listed.json()["jobs"]
