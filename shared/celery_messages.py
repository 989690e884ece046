"""Celery task messages written straight into Redis, in the same transaction as the job record.

Sending through kombu means a second round trip after the record is written, from a thread (kombu
blocks), with a window where a job exists and its task does not. Instead the API builds the exact
message kombu's Redis transport would push (Celery protocol 2, JSON body, base64 envelope) with
Celery's and kombu's own functions, and ``LPUSH``es it in the ``MULTI`` that writes the job: both
exist, or neither. ``tests/shared/test_celery_messages.py`` checks it against kombu's own output.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu.serialization import dumps

from shared.queues import TaskName


def task_message(
    app: Celery, name: str, args: list[Any], task_id: str, queue: str, headers: dict[str, Any] | None = None
) -> str:
    """The JSON kombu's Redis transport would ``LPUSH`` onto the list named ``queue``."""
    message = app.amqp.as_task_v2(task_id, name, args=args, kwargs={}, reply_to=app.thread_oid, ignore_result=None)
    content_type, content_encoding, body = dumps(message.body, serializer="json")
    if isinstance(body, str):
        body = body.encode(content_encoding)
    properties = {
        **message.properties,
        "delivery_mode": 2,  # persistent
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
        "delivery_info": {"exchange": "", "routing_key": queue},  # the default exchange, as Celery sends
    }
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": {**message.headers, **(headers or {})},
            "properties": properties,
        }
    )


# The time a job's message was first sent, in its headers. Messages leave a queue in the order they
# were sent (LPUSH, BRPOP from the other end), so the sweeper reads the oldest message's mark to tell
# "still waiting in the queue" from "taken by a consumer" without scanning the queue.
SENT_AT = "mlqueue_sent_at"


@dataclass(frozen=True)
class Outbound:
    """One task message ready to be pushed, and what the in-flight index records of it."""

    queue: str
    task_id: str  # the job id, or "{job id}.{chunk}" for a chunk of a batch
    body: str
    sent_at: float


def task_id_for(job_id: str, chunk: int | None = None) -> str:
    return job_id if chunk is None else f"{job_id}.{chunk}"


def parse_task_id(task_id: str) -> tuple[str, int | None]:
    """``task_id_for`` backwards: (job id, chunk or None)."""
    job_id, _, chunk = task_id.partition(".")
    return job_id, int(chunk) if chunk else None


def job_message(
    app: Celery, queue: str, job_id: str, chunk: int | None, sent_at: float, headers: dict[str, Any] | None = None
) -> Outbound:
    """The message that runs one job (``predict``) or one chunk of a batch (``predict_chunk``)."""
    name, args = (TaskName.PREDICT, [job_id]) if chunk is None else (TaskName.PREDICT_CHUNK, [job_id, chunk])
    task_id = task_id_for(job_id, chunk)
    body = task_message(app, name, args, task_id, queue, {**(headers or {}), SENT_AT: sent_at})
    return Outbound(queue, task_id, body, sent_at)


def sent_at_of(raw: str | bytes | None) -> float | None:
    """The send mark of a message as stored in a queue (None if absent or not ours)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)["headers"].get(SENT_AT)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
