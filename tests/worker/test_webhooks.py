"""Webhook delivery against a real receiver on 127.0.0.1, the retry schedule, and the Redis delayed
queue (with a real Redis). Nothing here talks to any address but loopback."""

from __future__ import annotations

import json
import random
import shutil
import ssl
import subprocess
import threading
import time

import httpx
import pytest
from standardwebhooks import Webhook

from devtools.server_process import free_port
from shared.jobs import Job, WebhookEvent, WebhookSpec
from shared.redis_keys import delivered_key, deliveries_key, job_key
from shared.ssrf import Target, check_url
from shared.store import JobStore, encode_fields, job_fields, redis_client
from shared.webhook_events import build_event
from tests.webhook_receiver import Receiver, Reply, new_secret
from worker.delayed import DelayedQueue, Scheduler
from worker.webhooks import (
    USER_AGENT,
    Outcome,
    RetrySchedule,
    body_of,
    classify,
    deliver,
    retry_queue,
    run_delivery,
    send_attempt,
)

SECRET = new_secret()


def a_job(url: str, events: list[WebhookEvent] | None = None, job_id: str = "01JOBWEBHOOKTEST0000000000") -> Job:
    spec = WebhookSpec(url=url) if events is None else WebhookSpec(url=url, events=events)
    return Job(id=job_id, model="iris", version=1, queue="cpu", created_at=time.time(), webhook=spec)


def target_for(receiver: Receiver, path: str = "/hook") -> Target:
    return check_url(receiver.url(path), allow_private=True)


def verify(received) -> dict:
    return Webhook(SECRET).verify(received.body, received.headers)


# --- outcome rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (299, Outcome.DELIVERED),
        (410, Outcome.STOP),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (301, Outcome.GIVE_UP),
        (302, Outcome.GIVE_UP),
        (307, Outcome.GIVE_UP),
        (400, Outcome.GIVE_UP),
        (401, Outcome.GIVE_UP),
        (404, Outcome.GIVE_UP),
        (422, Outcome.GIVE_UP),
    ],
)
def test_classify(status, outcome):
    assert classify(status)[0] is outcome


# --- retry schedule ------------------------------------------------------------------------------


def test_retry_schedule_parses_units():
    default = RetrySchedule.parse("5s,5m,30m,2h,5h,10h,24h")
    assert default.steps == [5, 300, 1800, 7200, 18000, 36000, 86400]
    assert RetrySchedule.parse(" 250ms, 1.5 ,2m,0.5h ").steps == [0.25, 1.5, 120, 1800]
    assert RetrySchedule.parse("").steps == []
    for bad in ("5x", "-1s", "abc", "1s,,x", "1.2.3s", "5 minutes"):
        with pytest.raises(ValueError):
            RetrySchedule.parse(bad)


def test_retry_delay_applies_jitter_within_20_percent_and_ends():
    schedule = RetrySchedule([5, 300, 86400], rng=random.Random(7))
    for attempt, base in enumerate([5, 300, 86400], start=1):
        samples = [schedule.delay(attempt) for _ in range(2000)]
        assert all(0.8 * base <= s <= 1.2 * base for s in samples)
        assert max(samples) - min(samples) > 0.3 * base  # it does spread
    assert schedule.delay(4) is None and schedule.delay(0) is None
    assert RetrySchedule([]).delay(1) is None
    assert RetrySchedule([1, 10]).max_delay_s == pytest.approx(12)


# --- one attempt against a real receiver --------------------------------------------------------


def test_delivered_with_a_standard_webhooks_signature():
    job = a_job("http://unused")
    message = build_event(job, WebhookEvent.STARTED)
    with Receiver() as receiver:
        attempt = deliver(target_for(receiver), message, SECRET, timeout_s=5)
        assert attempt.outcome is Outcome.DELIVERED and attempt.status_code == 200 and attempt.error is None
        [req] = receiver.received()
    assert req.method == "POST" and req.path == "/hook"
    payload = verify(req)
    assert payload == {"type": "job.started", "timestamp": message["timestamp"], "data": message["data"]}
    assert "webhook_id" not in payload and payload["data"]["id"] == job.id
    assert req.headers["webhook-id"] == message["webhook_id"]
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 5
    assert req.headers["content-type"] == "application/json" and req.headers["user-agent"] == USER_AGENT
    assert req.body.decode() == body_of(message)
    with pytest.raises(Exception, match="signature"):
        Webhook(new_secret()).verify(req.body, req.headers)


def test_connects_to_the_checked_address_and_sends_the_real_host_name():
    """The name in the URL is never resolved again at delivery: the request goes to ``ip``."""
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)
    with Receiver() as receiver:
        target = Target("http", "hooks.example.com", receiver.port, "127.0.0.1", "/in?x=1", "unused")
        assert deliver(target, message, SECRET, timeout_s=5).outcome is Outcome.DELIVERED
        [req] = receiver.received()
    assert req.headers["host"] == f"hooks.example.com:{receiver.port}" and req.path == "/in?x=1"


def test_410_means_stop():
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)
    with Receiver(reply=lambda req: Reply(410)) as receiver:
        attempt = deliver(target_for(receiver), message, SECRET, timeout_s=5)
    assert attempt.outcome is Outcome.STOP and attempt.status_code == 410 and "410" in attempt.error


def test_503_and_429_are_retried():
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)
    for status in (503, 429):
        with Receiver(reply=lambda req, s=status: Reply(s)) as receiver:
            attempt = deliver(target_for(receiver), message, SECRET, timeout_s=5)
        assert attempt.outcome is Outcome.RETRY and attempt.status_code == status


def test_redirect_is_not_followed_and_not_retried():
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)

    def reply(req):
        return Reply(302, headers={"location": "/inside"}) if req.path == "/hook" else Reply(200)

    with Receiver(reply=reply) as receiver:
        attempt = deliver(target_for(receiver), message, SECRET, timeout_s=5)
        time.sleep(0.1)
        assert receiver.received("/inside") == []
        assert len(receiver.received("/hook")) == 1
    assert attempt.outcome is Outcome.GIVE_UP and attempt.status_code == 302 and "redirect" in attempt.error


def test_timeout_is_retried():
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)
    with Receiver(reply=lambda req: Reply(200, delay_s=3)) as receiver:
        started = time.monotonic()
        attempt = deliver(target_for(receiver), message, SECRET, timeout_s=0.3)
        took = time.monotonic() - started
    assert attempt.outcome is Outcome.RETRY and attempt.status_code is None and "timeout" in attempt.error
    assert took < 2


def test_connection_refused_is_retried():
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)
    port = free_port()  # bound then closed: nothing listens
    target = check_url(f"http://127.0.0.1:{port}/hook", allow_private=True)
    attempt = deliver(target, message, SECRET, timeout_s=2)
    assert attempt.outcome is Outcome.RETRY and "ConnectError" in attempt.error


def test_a_bad_secret_gives_up_without_raising():
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)
    with Receiver() as receiver:
        attempt = deliver(target_for(receiver), message, "whsec_", timeout_s=2)
        assert receiver.received() == []
    assert attempt.outcome is Outcome.GIVE_UP


def test_the_client_ignores_proxy_environment(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:1")
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)
    with Receiver() as receiver, httpx.Client(trust_env=False) as client:
        assert deliver(target_for(receiver), message, SECRET, timeout_s=2).outcome is Outcome.DELIVERED
        assert deliver(target_for(receiver), message, SECRET, timeout_s=2, client=client).outcome is Outcome.DELIVERED


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for hooks.example.com (made by the openssl command line)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
         "-out", str(cert), "-subj", "/CN=hooks.example.com", "-addext", "subjectAltName=DNS:hooks.example.com"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


def test_https_goes_to_the_checked_address_and_verifies_the_real_host_name(tls_cert):
    server_ctx, client_ctx = tls_cert
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)
    with Receiver(tls=server_ctx) as receiver, httpx.Client(verify=client_ctx, trust_env=False) as client:
        good = Target("https", "hooks.example.com", receiver.port, "127.0.0.1", "/hook", "unused")
        attempt = deliver(good, message, SECRET, timeout_s=5, client=client)
        assert attempt.outcome is Outcome.DELIVERED, attempt
        [req] = receiver.received()
        assert req.headers["host"] == f"hooks.example.com:{receiver.port}"
        verify(req)
        # the same address under a name the certificate does not cover: TLS refuses it
        wrong = Target("https", "other.example.com", receiver.port, "127.0.0.1", "/hook", "unused")
        attempt = deliver(wrong, message, SECRET, timeout_s=5, client=client)
        assert attempt.outcome is Outcome.RETRY and "CERTIFICATE_VERIFY_FAILED" in attempt.error
        assert len(receiver.received()) == 1


# --- run_delivery: the attempt, its log on the job, the next attempt ----------------------------


class RecordingRetries:
    def __init__(self):
        self.scheduled = []

    def schedule(self, payload, due_at, item_id=None):
        self.scheduled.append((payload, due_at, item_id))


@pytest.fixture
def webhook_env(redis_settings):
    settings = redis_settings.model_copy(
        update={
            "webhook_secret": SECRET,
            "webhook_allow_private": True,
            "webhook_retry_schedule": "1s,2s",
            "webhook_timeout_s": 2.0,
        }
    )
    client = redis_client(settings)
    store = JobStore(client)

    def put(job: Job) -> Job:
        client.hset(job_key(job.id), mapping=encode_fields(job_fields(job)))
        client.expire(job_key(job.id), 600)
        return job

    yield settings, store, put
    client.close()


def test_run_delivery_logs_the_attempt_and_delivers_once(webhook_env):
    settings, store, put = webhook_env
    with Receiver() as receiver:
        job = put(a_job(receiver.url()))
        message = build_event(job, WebhookEvent.COMPLETED)
        retries = RecordingRetries()
        assert run_delivery(store, settings, retries, job.id, message, 1) is Outcome.DELIVERED
        # the same task again (a broker redelivery) does not post again
        assert run_delivery(store, settings, retries, job.id, message, 1) is None
        assert len(receiver.received()) == 1
    assert retries.scheduled == []
    assert store.r.ttl(delivered_key(message["webhook_id"])) > 0
    [logged] = store.get(job.id).deliveries
    assert logged.webhook_id == message["webhook_id"] and logged.event is WebhookEvent.COMPLETED
    assert logged.attempt == 1 and logged.status_code == 200 and logged.error is None and logged.duration_ms > 0


def test_run_delivery_schedules_the_next_attempt_then_gives_up(webhook_env):
    settings, store, put = webhook_env
    with Receiver(reply=lambda req: Reply(503)) as receiver:
        job = put(a_job(receiver.url()))
        message = build_event(job, WebhookEvent.COMPLETED)
        retries = RecordingRetries()
        before = time.time()
        assert run_delivery(store, settings, retries, job.id, message, 1) is Outcome.RETRY
        [(payload, due_at, item_id)] = retries.scheduled
        assert payload == {"job_id": job.id, "message": message, "attempt": 2}
        assert before + 0.8 <= due_at <= time.time() + 1.2 and item_id == f"{message['webhook_id']}#2"
        assert run_delivery(store, settings, retries, job.id, message, 2) is Outcome.RETRY
        assert len(retries.scheduled) == 2
        # the schedule has two steps: the third attempt is the last
        assert run_delivery(store, settings, retries, job.id, message, 3) is Outcome.RETRY
        assert len(retries.scheduled) == 2 and len(receiver.received()) == 3
    log = store.get(job.id).deliveries
    assert [(d.attempt, d.status_code) for d in log] == [(1, 503), (2, 503), (3, 503)]
    assert "no retries left" in log[-1].error and "no retries left" not in (log[0].error or "")


def test_run_delivery_stops_every_event_of_the_job_after_410(webhook_env):
    settings, store, put = webhook_env
    with Receiver(reply=lambda req: Reply(410)) as receiver:
        job = put(a_job(receiver.url()))
        retries = RecordingRetries()
        started = build_event(job, WebhookEvent.STARTED)
        assert run_delivery(store, settings, retries, job.id, started, 1) is Outcome.STOP
        completed = build_event(job, WebhookEvent.COMPLETED)
        assert run_delivery(store, settings, retries, job.id, completed, 1) is None
        assert len(receiver.received()) == 1
    assert retries.scheduled == []
    assert [d.status_code for d in store.get(job.id).deliveries] == [410]


def test_run_delivery_refuses_a_forbidden_address_at_delivery_time(webhook_env):
    settings, store, put = webhook_env
    settings = settings.model_copy(update={"webhook_allow_private": False})
    with Receiver() as receiver:
        job = put(a_job(receiver.url()))  # 127.0.0.1: accepted only with allow_private
        retries = RecordingRetries()
        message = build_event(job, WebhookEvent.COMPLETED)
        assert run_delivery(store, settings, retries, job.id, message, 1) is Outcome.GIVE_UP
        assert receiver.received() == []
    assert retries.scheduled == []
    [logged] = store.get(job.id).deliveries
    assert logged.status_code is None and "loopback" in logged.error


def test_a_retry_outliving_its_job_is_still_delivered_but_logs_nowhere(webhook_env):
    settings, store, _ = webhook_env
    gone = "01JGONE0000000000000000000"
    with Receiver() as receiver:
        message = build_event(a_job(receiver.url()), WebhookEvent.COMPLETED)  # the URL travels with the event
        assert run_delivery(store, settings, RecordingRetries(), gone, message, 2) is Outcome.DELIVERED
        assert len(receiver.received()) == 1
    assert not store.r.exists(deliveries_key(gone))  # no orphan log for an expired job


def test_an_event_without_url_for_an_expired_job_is_dropped(webhook_env):
    settings, store, _ = webhook_env
    message = {**build_event(a_job("http://127.0.0.1:1/x"), WebhookEvent.COMPLETED), "url": None}
    assert run_delivery(store, settings, RecordingRetries(), "01JGONE0000000000000000000", message, 2) is None


def test_two_copies_of_one_task_at_once_post_once(webhook_env):
    settings, store, put = webhook_env
    gate = threading.Event()

    def slow(req):
        gate.wait(2)
        return Reply(200)

    with Receiver(reply=slow) as receiver:
        job = put(a_job(receiver.url()))
        message = build_event(job, WebhookEvent.COMPLETED)
        outcomes = []
        threads = [
            threading.Thread(
                target=lambda: outcomes.append(run_delivery(store, settings, RecordingRetries(), job.id, message, 1))
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        time.sleep(0.3)
        gate.set()
        for t in threads:
            t.join(5)
        assert sorted(outcomes, key=str) == sorted([Outcome.DELIVERED, None], key=str)
        assert len(receiver.received()) == 1


# --- the delayed queue and its scheduler ---------------------------------------------------------


@pytest.fixture
def delayed(redis_settings):
    client = redis_client(redis_settings)
    yield DelayedQueue(client, key="test:delayed", ttl_s=120)
    client.close()


def test_delayed_queue_returns_only_due_items_in_due_order(delayed):
    now = time.time()
    delayed.schedule({"n": 2}, now - 1)
    delayed.schedule({"n": 1}, now - 2)
    delayed.schedule({"n": 3}, now + 60)
    assert 0 < delayed.r.ttl(delayed.key) <= 120
    items = delayed.claim_due(now, limit=10)
    assert [i.payload for i in items] == [{"n": 1}, {"n": 2}]
    assert delayed.claim_due(now, limit=10) == []  # leased
    delayed.ack(items)
    assert len(delayed) == 1 and [i.payload for i in delayed.claim_due(now + 61)] == [{"n": 3}]


def test_an_unacked_claim_comes_back_after_its_lease(delayed):
    now = time.time()
    delayed.schedule({"n": 1}, now)
    assert len(delayed.claim_due(now, lease_s=5)) == 1
    assert delayed.claim_due(now + 4) == []
    assert [i.payload for i in delayed.claim_due(now + 6)] == [{"n": 1}]


def test_scheduling_the_same_item_twice_keeps_one(delayed):
    now = time.time()
    assert delayed.schedule({"n": 1}, now, item_id="msg_x#2")
    assert not delayed.schedule({"n": 1}, now + 5, item_id="msg_x#2")
    assert delayed.schedule({"n": 1}, now)  # no id: a new entry
    assert len(delayed) == 2


def test_two_concurrent_claimers_never_claim_the_same_item(delayed, redis_settings):
    now = time.time()
    with delayed.r.pipeline() as pipe:
        for n in range(600):
            pipe.zadd(delayed.key, {DelayedQueue.encode({"n": n}): now - n / 1000})
        pipe.execute()
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def claimer(mine: list[int]) -> None:
        queue = DelayedQueue(redis_client(redis_settings), key=delayed.key)  # a connection of its own
        start.wait()
        while items := queue.claim_due(now, limit=7):
            mine.extend(i.payload["n"] for i in items)
        queue.r.close()

    threads = [threading.Thread(target=claimer, args=(c,)) for c in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert claimed[0] and claimed[1]  # both took part
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == list(range(600))


def test_scheduler_dispatches_items_when_due(delayed):
    dispatched: list[dict] = []
    now = time.time()
    delayed.schedule({"n": "now"}, now)
    delayed.schedule({"n": "soon"}, now + 0.4)
    delayed.schedule({"n": "later"}, now + 60)
    scheduler = Scheduler(delayed, dispatched.append, interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while len(dispatched) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        scheduler.stop()
    assert [d["n"] for d in dispatched] == ["now", "soon"]
    assert len(delayed) == 1


def test_scheduler_keeps_an_item_whose_dispatch_failed(delayed):
    def broken(payload):
        raise ConnectionError("broker down")

    delayed.schedule({"n": 1}, time.time())
    assert Scheduler(delayed, broken).run_once() == 0
    assert len(delayed) == 1  # leased, comes back later


def test_due_retries_become_delivery_tasks(redis_settings):
    sent = []

    class Sender:
        def send_task(self, name, args, queue):
            sent.append((name, args, queue))

    payload = {"job_id": "J", "message": {"webhook_id": "msg_1"}, "attempt": 3}
    send_attempt(Sender(), payload)
    assert sent == [("mlqueue.deliver_webhook", ["J", {"webhook_id": "msg_1"}, 3], "webhooks")]
    client = redis_client(redis_settings)
    queue = retry_queue(client, redis_settings)  # the default schedule's 24 h step (+20 %) plus an hour
    assert queue.ttl_s == int(86400 * 1.2) + 3600
    client.close()


def test_payload_round_trips_as_json(delayed):
    message = build_event(a_job("http://unused"), WebhookEvent.COMPLETED)
    payload = {"job_id": "J", "message": message, "attempt": 2}
    delayed.schedule(payload, time.time())
    [item] = delayed.claim_due()
    assert item.payload == json.loads(json.dumps(payload))
