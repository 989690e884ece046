"""Webhook delivery (Standard Webhooks): one signed POST per attempt, retries on a schedule, every
attempt logged on the job.

Deliveries run on their own queue, ``webhooks``, consumed by their own workers, so a receiver that
is down or hangs never holds a thread that a prediction needs. A webhook-only worker loads no
models::

    MLQUEUE_WORKER_QUEUES=webhooks MLQUEUE_WORKER_CONCURRENCY=32 python -m worker

One attempt (``deliver``):

- The SSRF guard runs again (``shared.ssrf.check_url``): DNS may have changed since submission.
  The request then goes to the address that was checked (the URL's host is replaced by that IP,
  the ``Host`` header and the TLS server name stay the real host name, so certificates are
  verified against it), so DNS cannot change between check and connection.
- Headers ``webhook-id`` (the event's id, the same on every attempt, for the receiver to drop
  duplicates), ``webhook-timestamp`` (this attempt's time: receivers refuse timestamps more than
  5 minutes off) and ``webhook-signature``, made by the ``standardwebhooks`` package.
- Redirects are not followed: a 3xx could point at an internal address the guard never saw, and
  following it to a checked address would be a second request the receiver did not ask for in a
  documented way. A 3xx is a failed attempt that is not retried (it would redirect again).
- Proxies from the environment are ignored (``trust_env=False``): a proxy would do its own DNS.
- The response body is never read (a receiver cannot make us download anything).

Outcomes: 2xx delivered; 410 stop (the receiver asked to stop: no retries, and no further events
for this job); 408, 429, 5xx, timeouts and connection errors retry; other 3xx/4xx give up.
``httpx``'s timeout is per operation (connect, each read), not a total; a receiver that trickles a
byte every few seconds can hold an attempt longer than ``webhook_timeout_s``.

Retries (``RetrySchedule``): after failed attempt ``n`` the next one waits step ``n`` of
``MLQUEUE_WEBHOOK_RETRY_SCHEDULE`` ± 20 % jitter (so receivers coming back are not hit by every
sender at once), then attempt ``n+1`` is queued through ``worker.delayed`` (never a Celery
countdown). When the steps are exhausted the event is given up. A retry due after the job has
expired is dropped: the job (with its URL and delivery log) is gone.

Delivered once per event id: a Redis marker ``mlqueue:webhook:delivered:{webhook_id}`` is set on a
2xx and checked before every attempt, and a short lock keeps two copies of one task (a broker
redelivery) from posting at the same time. A worker that dies between the receiver's 2xx and the
marker can still cause one duplicate: receivers dedupe on ``webhook-id``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol

import httpx
import redis
from standardwebhooks import Webhook

from shared.durations import parse_duration
from shared.jobs import WebhookDelivery, WebhookEvent
from shared.queues import Queue, TaskName
from shared.redis_keys import delivered_key, inflight_key, stopped_key
from shared.settings import Settings
from shared.ssrf import Target, UrlRefused, check_url
from shared.store import JobStore
from worker.delayed import DelayedQueue

log = logging.getLogger(__name__)

USER_AGENT = "mlqueue-webhooks/1"
LOCK_MARGIN_S = 30


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    STOP = "stop"  # 410 Gone: the receiver asked us to stop
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0


def classify(status_code: int) -> tuple[Outcome, str | None]:
    if 200 <= status_code < 300:
        return Outcome.DELIVERED, None
    if status_code == 410:
        return Outcome.STOP, "receiver answered 410 Gone: no more deliveries"
    if status_code in (408, 429) or status_code >= 500:
        return Outcome.RETRY, f"HTTP {status_code}"
    if 300 <= status_code < 400:
        return Outcome.GIVE_UP, f"HTTP {status_code}: redirects are not followed"
    return Outcome.GIVE_UP, f"HTTP {status_code}"


# Keep-alive is off: pooled connections are keyed by the IP we connect to, so a connection opened
# (and TLS-verified) for one host name must not be reused for another name on the same address.
_client_lock = threading.Lock()
_client: httpx.Client | None = None


def _shared_client() -> httpx.Client:
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            )
        return _client


def body_of(message: dict[str, Any]) -> str:
    """The JSON posted: the event minus its id (which travels in the ``webhook-id`` header)."""
    return json.dumps({k: message[k] for k in ("type", "timestamp", "data")}, separators=(",", ":"), allow_nan=False)


def signed_headers(message: dict[str, Any], body: str, secret: str, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    msg_id = message["webhook_id"]
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def deliver(
    target: Target, message: dict[str, Any], secret: str, timeout_s: float, client: httpx.Client | None = None
) -> Attempt:
    """POST one signed event to the checked address. Never raises."""
    started = time.perf_counter()

    def took() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    try:
        body = body_of(message)
        headers = {**signed_headers(message, body, secret), "host": target.host_header}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        client = client or _shared_client()
        request = client.build_request(
            "POST", target.connect_url, content=body.encode(), headers=headers, timeout=timeout_s, extensions=extensions
        )
        response = client.send(request, stream=True)  # the body is never read
        response.close()
    except httpx.TimeoutException as exc:
        return Attempt(Outcome.RETRY, error=f"timeout after {timeout_s:g}s ({type(exc).__name__})", duration_ms=took())
    except httpx.TransportError as exc:  # refused, reset, TLS failure, protocol error
        return Attempt(Outcome.RETRY, error=f"{type(exc).__name__}: {exc}"[:500], duration_ms=took())
    except Exception as exc:  # noqa: BLE001 - a bad secret, URL or header: it would fail the same way again
        return Attempt(Outcome.GIVE_UP, error=f"{type(exc).__name__}: {exc}"[:500], duration_ms=took())
    outcome, error = classify(response.status_code)
    return Attempt(outcome, status_code=response.status_code, error=error, duration_ms=took())


class RetrySchedule:
    """Delays between attempts, e.g. ``"5s,5m,30m,2h,5h,10h,24h"`` (units ms, s, m, h; a plain
    number is seconds; an empty string means no retries). ``delay(n)`` is the wait after failed
    attempt ``n`` (1-based), ± ``jitter`` (a fraction), or None when no attempt is left: with ``k``
    steps an event gets at most ``k + 1`` attempts."""

    def __init__(self, steps: list[float], jitter: float = 0.2, rng: random.Random | None = None) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.steps = list(steps)
        self.jitter = jitter
        self.rng = rng or random.Random()

    @classmethod
    def parse(cls, spec: str, jitter: float = 0.2) -> RetrySchedule:
        steps = []
        for part in (p.strip().lower() for p in spec.split(",")):
            if not part:
                continue
            try:
                steps.append(parse_duration(part))
            except ValueError as exc:
                raise ValueError(f"bad retry step {part!r} in {spec!r}: {exc}") from exc
        return cls(steps, jitter)

    @property
    def max_delay_s(self) -> float:
        return max(self.steps, default=0.0) * (1 + self.jitter)

    def delay(self, attempt: int) -> float | None:
        if attempt < 1 or attempt > len(self.steps):
            return None
        base = self.steps[attempt - 1]
        return base * self.rng.uniform(1 - self.jitter, 1 + self.jitter)


@lru_cache(maxsize=8)
def schedule_for(spec: str) -> RetrySchedule:
    return RetrySchedule.parse(spec)


class Retries(Protocol):
    def schedule(self, payload: dict[str, Any], due_at: float, item_id: str | None = None) -> Any: ...


def run_delivery(
    store: JobStore,
    settings: Settings,
    retries: Retries,
    job_id: str,
    message: dict[str, Any],
    attempt: int,
    *,
    client: httpx.Client | None = None,
) -> Outcome | None:
    """One attempt for one event: check, post, log it on the job, queue the next attempt if it
    may succeed later. Returns the outcome, or None when nothing was attempted (job gone, event
    already delivered, another copy in flight, receiver stopped us earlier)."""
    webhook_id = message["webhook_id"]
    event = WebhookEvent(message["type"])
    schedule = schedule_for(settings.webhook_retry_schedule)  # a bad setting fails here, before any POST
    r = store.r
    job = store.get(job_id)
    url = message.get("url") or (job.webhook.url if job is not None and job.webhook is not None else None)
    if url is None:
        log.info("webhook.dropped reason=job_gone webhook_id=%s attempt=%s", webhook_id, attempt)
        return None
    lock = inflight_key(webhook_id)
    if not r.set(lock, str(attempt), nx=True, ex=int(settings.webhook_timeout_s) + LOCK_MARGIN_S):
        log.info("webhook.duplicate webhook_id=%s attempt=%s (in flight elsewhere)", webhook_id, attempt)
        return None
    try:
        if r.exists(delivered_key(webhook_id)):
            log.info("webhook.duplicate webhook_id=%s attempt=%s (already delivered)", webhook_id, attempt)
            return None
        if r.exists(stopped_key(job_id)):
            log.info("webhook.dropped reason=receiver_gone webhook_id=%s event=%s", webhook_id, event.value)
            return None
        result = _attempt(settings, url, message, client)
        if result.outcome is Outcome.DELIVERED:
            r.set(delivered_key(webhook_id), "1", nx=True, ex=settings.job_ttl_s)
        elif result.outcome is Outcome.STOP:
            r.set(stopped_key(job_id), "1", ex=settings.job_ttl_s)
    finally:
        r.delete(lock)

    error = result.error
    next_delay = None
    if result.outcome is Outcome.RETRY:
        next_delay = schedule.delay(attempt)
        if next_delay is None:
            error = f"{error}; no retries left"
    if job is not None:  # an expired job keeps no log (it would outlive nothing)
        store.record_delivery(
            job_id,
            WebhookDelivery(
                webhook_id=webhook_id,
                event=event,
                attempt=attempt,
                at=datetime.now(UTC),
                status_code=result.status_code,
                error=error,
                duration_ms=result.duration_ms,
            ),
        )
    log.info(
        "webhook.%s event=%s webhook_id=%s attempt=%s status=%s ms=%s%s",
        result.outcome.value,
        event.value,
        webhook_id,
        attempt,
        result.status_code,
        result.duration_ms,
        f" error={error!r}" if error else "",
    )
    if next_delay is not None:
        payload = {"job_id": job_id, "message": message, "attempt": attempt + 1}
        retries.schedule(payload, time.time() + next_delay, item_id=f"{webhook_id}#{attempt + 1}")
        log.info("webhook.retry_scheduled webhook_id=%s attempt=%s in_s=%.2f", webhook_id, attempt + 1, next_delay)
    return result.outcome


def _attempt(settings: Settings, url: str, message: dict[str, Any], client: httpx.Client | None) -> Attempt:
    if not settings.webhook_secret:
        return Attempt(Outcome.GIVE_UP, error="no webhook secret is configured (MLQUEUE_WEBHOOK_SECRET)")
    started = time.perf_counter()
    try:
        target = check_url(url, allow_private=settings.webhook_allow_private)
    except UrlRefused as exc:
        took = round((time.perf_counter() - started) * 1000, 3)
        # An address that is forbidden now stays forbidden; a name that did not resolve may later.
        return Attempt(Outcome.RETRY if exc.retryable else Outcome.GIVE_UP, error=exc.detail, duration_ms=took)
    return deliver(target, message, settings.webhook_secret, settings.webhook_timeout_s, client)


def send_attempt(sender: Any, payload: dict[str, Any]) -> None:
    """Queue a due retry (``payload`` as ``run_delivery`` scheduled it) as a delivery task."""
    args = [payload["job_id"], payload["message"], payload["attempt"]]
    sender.send_task(TaskName.DELIVER_WEBHOOK, args=args, queue=Queue.WEBHOOKS.value)


def retry_queue(client: redis.Redis, settings: Settings) -> DelayedQueue:
    """The delayed-retry set; its TTL outlasts the longest step (with jitter) by an hour."""
    ttl_s = int(schedule_for(settings.webhook_retry_schedule).max_delay_s) + 3600
    return DelayedQueue(client, ttl_s=ttl_s)
