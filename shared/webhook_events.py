"""Webhook events: built where the state changes (worker, or API on cancel), delivered by the
``webhooks`` queue's workers. The payload is a snapshot of the job at the moment of the event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Celery

from shared.jobs import Job, JobPublic, WebhookEvent, new_job_id
from shared.queues import Queue, TaskName


def build_event(job: Job, event: WebhookEvent) -> dict[str, Any]:
    """``{webhook_id, type, timestamp, data, url}``; the webhook id stays the same across retries, so
    receivers can drop duplicates (Standard Webhooks ``webhook-id``)."""
    return {
        "webhook_id": f"msg_{new_job_id()}",
        "type": event.value,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": JobPublic.from_job(job).model_dump(mode="json", exclude={"webhook"}),
        # retries can outlive the job record (24 h schedule vs job TTL): the URL travels with the event
        "url": job.webhook.url if job.webhook else None,
    }


def wants_event(job: Job, event: WebhookEvent) -> bool:
    """Whether ``job`` has a webhook that wants ``event``. Callers ask before paying for a send (a
    fresh read of the job, a thread hop); ``send_event`` asks again, so no unwanted event goes out."""
    return job.webhook is not None and job.webhook.wants(event)


def send_event(sender: Celery, job: Job, event: WebhookEvent) -> str | None:
    """Queue a delivery if the job has a webhook that wants this event; returns its webhook id."""
    if not wants_event(job, event):
        return None
    message = build_event(job, event)
    sender.send_task(TaskName.DELIVER_WEBHOOK, args=[job.id, message, 1], queue=Queue.WEBHOOKS.value)
    webhook_id: str = message["webhook_id"]
    return webhook_id
