"""Resource limits against a real API process: idle and slow clients are cut off, huge header blocks
refused, image decoding bounded in memory across requests, /metrics behind its token, forwarded
headers believed only from trusted proxies, and 300 concurrent submissions never exhaust the Redis pool."""

import asyncio
import contextlib
import io
import select
import socket
import threading
import time

import httpx
import psutil
import pytest
from PIL import Image

from devtools.processes import make_stack
from tests.api.helpers import SETOSA

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
METRICS_TOKEN = "metrics-not-a-secret"


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """Redis and the API alone (no worker: jobs stay queued), with short client timeouts."""
    stack = make_stack(
        tmp_path_factory.mktemp("limited"),
        header_timeout_s=str(HEADER_TIMEOUT_S),
        body_read_timeout_s=str(BODY_TIMEOUT_S),
        keep_alive_timeout_s="1",
        metrics_token=METRICS_TOKEN,
        rate_limit="20/minute",
    )
    try:
        stack.start_api()
        stack.wait_for(lambda: _healthy(stack.api_url), timeout_s=60)
        yield stack
    finally:
        stack.stop_all()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def connect(stack) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(stack.env["MLQUEUE_API_PORT"])), timeout=10)


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def trickle(sock: socket.socket, payload: bytes, interval_s: float) -> None:
    """Send ``payload`` a byte every ``interval_s``, stopping as soon as the server answers or closes."""
    for byte in payload:
        readable, _, _ = select.select([sock], [], [], interval_s)
        if readable:
            return
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return


def test_a_connection_that_sends_nothing_is_closed_within_the_header_timeout(limited):
    with connect(limited) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 2


def test_a_head_sent_a_byte_at_a_time_is_cut_off_with_408(limited):
    with connect(limited) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        trickle(sock, b"X-Slow: " + b"a" * 100, 0.1)
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout" in answer
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 2


def test_a_slowloris_body_gets_408_within_the_body_deadline(limited):
    with connect(limited) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /v1/models/iris/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        trickle(sock, b" " * 20, 0.5)  # 10 s at 2 bytes/s, unless cut off
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer, answer[:200]
        assert time.monotonic() - started < BODY_TIMEOUT_S + 2


def test_a_megabyte_of_headers_is_refused_with_431(limited):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(1000)
    )
    with connect(limited) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused before it was all sent
            sock.sendall(head + b"\r\n")
        answer = read_until_closed(sock)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    with httpx.Client(base_url=limited.api_url, timeout=10) as client:  # a normal request is unaffected
        assert client.get("/healthz", headers={"X-Normal": "a" * 4000}).status_code == 200


def test_metrics_need_the_token_when_one_is_set(limited):
    with httpx.Client(base_url=limited.api_url, timeout=10) as client:
        missing = client.get("/metrics")
        assert missing.status_code == 401 and missing.json()["code"] == "invalid_metrics_token"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert ok.status_code == 200 and "mlqueue_http_requests_total" in ok.text


def big_png(side: int = 6000) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()  # 36 Mpx in ~120 KB


def test_concurrent_huge_images_are_decoded_within_a_memory_bound_and_the_memory_returns(limited):
    api = psutil.Process(limited.procs["api"].pid)
    data = big_png()
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, api.memory_info().rss)
            time.sleep(0.01)

    async def submit_all() -> list[int]:
        async with httpx.AsyncClient(base_url=limited.api_url, timeout=120) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/models/digits/jobs", files={"file": ("big.png", data)}) for _ in range(6))
            )
        return [a.status_code for a in answers]

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        statuses = asyncio.run(submit_all())
    finally:
        done.set()
        sampler.join()
    assert statuses == [202] * 6
    # One 36-Mpx decode at a time (the default budget is 40 Mpx) costs ~275 MB; six at once took 1.6 GB.
    assert peak < 700 * 2**20, f"peak RSS {peak >> 20} MB"
    deadline = time.monotonic() + 10
    while (rss := api.memory_info().rss) > 150 * 2**20:
        assert time.monotonic() < deadline, f"RSS stayed at {rss >> 20} MB after the decodes"
        time.sleep(0.2)


def test_a_rotating_forwarded_for_from_an_untrusted_peer_is_still_rate_limited(limited):
    with httpx.Client(base_url=limited.api_url, timeout=10) as client:
        statuses = [
            client.get("/v1/models", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(40)
        ]
    assert 429 in statuses, statuses  # the limit is 20/minute for the one real peer, 127.0.0.1


def test_300_concurrent_submissions_all_succeed_with_a_healthy_redis(stack):
    async def submit_all() -> list[int]:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=60, limits=limits) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/models/iris/jobs", json={"input": SETOSA}) for _ in range(300))
            )
        return [a.status_code for a in answers]

    statuses = asyncio.run(submit_all())
    assert [s for s in statuses if not 200 <= s < 300] == []
