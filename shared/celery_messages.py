"""Celery task messages written straight into Redis, in the same transaction as the job record.

Sending through kombu means a second round trip after the record is written, from a thread (kombu
blocks), with a window where a job exists and its wake-up does not. Instead the API builds the
exact message kombu's Redis transport would push (Celery protocol 2, JSON body, base64 envelope)
with Celery's and kombu's own functions, and ``LPUSH``es it in the ``MULTI`` that writes the job:
both exist, or neither. ``tests/shared/test_celery_messages.py`` checks it against kombu's own output.
"""

from __future__ import annotations

import base64
import json
import uuid
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


def ticket_message(app: Celery, queue: str, headers: dict[str, Any] | None = None) -> str:
    """A wake-up for ``queue``'s workers: the one who takes it claims the work next in line
    (``shared.scheduler``). Tickets name no job, so one lost, duplicated or late changes nothing
    but who wakes up."""
    return task_message(app, TaskName.DRAIN, [queue], uuid.uuid4().hex, queue, headers)
