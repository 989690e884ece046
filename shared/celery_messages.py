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
from collections.abc import Sequence
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
    members: tuple[str, ...]  # job ids, or "{job id}.{chunk}" for a chunk of a batch
    body: str
    sent_at: float


# The single jobs a ``predict_many`` message runs, in its headers too: the sweeper reads them from
# kombu's unacked hash without decoding bodies.
JOBS = "mlqueue_jobs"


def jobs_message(
    app: Celery, queue: str, job_ids: Sequence[str], sent_at: float, headers: dict[str, Any] | None = None
) -> Outbound:
    """One message that runs single jobs which arrived together (``predict_many``): one delivery,
    one read, one forward pass and one write for all of them."""
    ids = list(job_ids)
    task_id = ids[0] if len(ids) == 1 else f"{ids[0]}+{len(ids) - 1}"
    body = task_message(
        app, TaskName.PREDICT_MANY, [ids], task_id, queue, {**(headers or {}), SENT_AT: sent_at, JOBS: ids}
    )
    return Outbound(queue, tuple(ids), body, sent_at)


def chunk_message(
    app: Celery, queue: str, job_id: str, chunk: int, sent_at: float, headers: dict[str, Any] | None = None
) -> Outbound:
    """The message that runs one chunk of a batch (``predict_chunk``)."""
    task_id = chunk_task_id(job_id, chunk)
    body = task_message(
        app, TaskName.PREDICT_CHUNK, [job_id, chunk], task_id, queue, {**(headers or {}), SENT_AT: sent_at}
    )
    return Outbound(queue, (task_id,), body, sent_at)


def chunk_task_id(job_id: str, chunk: int) -> str:
    return f"{job_id}.{chunk}"


def parse_member(member: str) -> tuple[str, int | None]:
    """An in-flight member back to (job id, chunk or None)."""
    job_id, _, chunk = member.partition(".")
    return job_id, int(chunk) if chunk else None


def members_of(headers: dict[str, Any]) -> list[str]:
    """The in-flight members a message (by its headers) carries: its jobs, or its chunk."""
    if isinstance(headers.get(JOBS), list):
        return [m for m in headers[JOBS] if isinstance(m, str)]
    if headers.get("task") == TaskName.PREDICT_CHUNK.value and isinstance(headers.get("id"), str):
        return [headers["id"]]
    if headers.get("task") == TaskName.PREDICT.value and isinstance(headers.get("id"), str):
        return [headers["id"]]  # a message from before predict_many
    return []


def sent_at_of(raw: str | bytes | None) -> float | None:
    """The send mark of a message as stored in a queue (None if absent or not ours)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)["headers"].get(SENT_AT)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
