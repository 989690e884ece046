"""Which webhook events a job's webhook gets: the one check every sender asks."""

from shared.jobs import Job, WebhookEvent, WebhookSpec
from shared.webhook_events import wants_event


def job(webhook: WebhookSpec | None) -> Job:
    return Job(id="job_1", model="iris", version=1, queue="cpu", created_at=0.0, webhook=webhook)


def test_a_job_without_a_webhook_wants_no_event():
    assert not any(wants_event(job(None), event) for event in WebhookEvent)


def test_completed_is_always_sent_and_the_others_only_when_asked_for():
    spec = WebhookSpec(url="https://example.com/hook", events=[WebhookEvent.STARTED])
    assert wants_event(job(spec), WebhookEvent.COMPLETED)
    assert wants_event(job(spec), WebhookEvent.STARTED)
    assert not wants_event(job(spec), WebhookEvent.PROGRESS)
