import time

from shared.jobs import TERMINAL_STATUSES, Job, JobPublic, JobStatus, min_job_id_at, new_job_id


def test_job_ids_sort_by_creation_time():
    ids = [new_job_id(time.time() + i) for i in range(5)]
    assert ids == sorted(ids)
    assert len(set(new_job_id() for _ in range(1000))) == 1000


def test_min_job_id_bounds_ids_created_later():
    now = time.time()
    assert min_job_id_at(now - 1) < new_job_id(now) < min_job_id_at(now + 1)


def test_terminal_states():
    assert {s.value for s in TERMINAL_STATUSES} == {"succeeded", "failed", "canceled", "aborted"}
    assert not JobStatus.QUEUED.is_terminal() and not JobStatus.RUNNING.is_terminal()


def test_public_job_has_iso_times_and_urls_but_no_internal_fields():
    job = Job(id="01ABC", model="iris", version=1, queue="cpu", created_at=0.0, request_hash="x")
    public = JobPublic.from_job(job).model_dump(mode="json")
    assert public["created_at"] == "1970-01-01T00:00:00Z"
    assert public["urls"] == {
        "get": "/v1/jobs/01ABC",
        "cancel": "/v1/jobs/01ABC/cancel",
        "events": "/v1/jobs/01ABC/events",
        "results": None,
    }
    assert public["queue"] is None  # the place in line, only while queued and known; never the queue's name
    assert "request_hash" not in public and "cache_key" not in public
