"""The client and CLI over the scheduler, on a stack of its own with API keys made by
``create_key``'s options: priorities round-trip and the key's ceiling holds, an aborted job is
retried as a new linked job whose place in line the CLI shows, jobs filter by error code, and a
full queue's 429 / 503 surface with their codes and Retry-After."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import pytest

import mlqueue
from devtools.processes import Stack, running_stack
from mlqueue import AsyncClient, Client, create_key
from shared.settings import REPO_ROOT
from tests.client.helpers import cli_json, run_cli

pytestmark = pytest.mark.integration

SETOSA = [5.1, 3.5, 1.4, 0.2]
KEYS = {
    "bulk": create_key("bulk", ["submit", "read"], weight="0.5", priority="low", max_priority="normal"),
    "user": create_key("user", ["submit", "read"], weight=2),
    "flood": create_key("flood", ["submit", "read"]),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("client-scheduling")
    models = tmp / "models"  # iris only: the worker starts (and restarts) in seconds
    shutil.copytree(REPO_ROOT / "models" / "iris", models / "iris")
    keys = ",".join(entry for _, entry in KEYS.values())
    with running_stack(tmp, models_dir=str(models), api_keys=keys, max_backlog="6", max_backlog_age_s="0") as s:
        yield s


@pytest.fixture
def stalled(stack) -> Iterator[Stack]:
    """The worker stopped: work waits in line and nothing drains; started again afterwards."""
    stack.stop("worker")
    try:
        yield stack
    finally:
        stack.start_worker()
        stack.wait_ready()


def as_(stack: Stack, name: str, **kwargs) -> Client:
    return Client(stack.api_url, KEYS[name][0], **kwargs)


def test_priority_round_trips_within_the_keys_ceiling(stack):
    with as_(stack, "bulk") as mlq:
        assert mlq.submit("iris", SETOSA, wait=10).priority == "low"  # the key's default
        job = mlq.submit("iris", SETOSA, wait=10, priority="normal")
        assert job.priority == "normal" and job.succeeded
        assert mlq.predict("iris", SETOSA, priority="normal")["label"] == "setosa"
        batch = mlq.batch("iris", [SETOSA, [6.7, 3.0, 5.2, 2.3]], priority="low")
        assert batch.priority == "low" and batch.wait(30).succeeded
        with pytest.raises(mlqueue.Forbidden) as above:
            mlq.submit("iris", SETOSA, priority="high")
        assert above.value.status == 403 and above.value.code == "priority_not_allowed"
        with pytest.raises(mlqueue.InvalidInput) as bad:
            mlq.submit("iris", SETOSA, priority="urgent")
        assert bad.value.status == 422
        with pytest.raises(mlqueue.InvalidInput):
            mlq.batch("iris", [SETOSA], priority="urgent")


def test_async_client_sends_priority_and_retries(stack):
    async def scenario() -> None:
        async with AsyncClient(stack.api_url, KEYS["user"][0]) as mlq:
            job = await mlq.submit("iris", SETOSA, wait=10, priority="high")
            assert job.priority == "high" and job.succeeded
            assert (await mlq.predict("iris", SETOSA, priority="low"))["label"] == "setosa"
            batch = await mlq.batch("iris", [SETOSA], priority="low")
            assert batch.priority == "low"
            await batch.wait(30)
            with pytest.raises(mlqueue.Conflict) as done:
                await mlq.retry(job.id)
            assert done.value.code == "job_not_retryable"
            with pytest.raises(mlqueue.InvalidInput):
                await mlq.submit("iris", SETOSA, priority="urgent")

    asyncio.run(scenario())


def test_an_aborted_job_is_retried_and_its_place_in_line_shown(stalled):
    url, key = stalled.api_url, KEYS["user"][0]
    with as_(stalled, "user") as mlq:
        with pytest.raises(mlqueue.JobFailed) as aborted:
            mlq.predict("iris", SETOSA, wait=10, cancel_after="1s")
        old = aborted.value.job
        assert old.status == "aborted" and old.queue is None
        new = old.retry()
        assert new.id != old.id and new.retry_of == old.id and new.status == "queued"
        assert new.queue is not None and new.queue.position >= 1
        assert mlq.job(new.id).queue.position == new.queue.position
        shown = run_cli("job", new.id, url=url, api_key=key)
        assert shown.returncode == 0 and f"retry_of: {old.id}" in shown.stdout, shown.stderr
        assert f"queue: #{new.queue.position} in line" in shown.stdout
        again = run_cli("retry", old.id, url=url, api_key=key)
        assert again.returncode == 0 and f"(retry of {old.id})" in again.stdout and "queued (#" in again.stdout
        again_id = again.stdout.split(":")[0]
        # The filter by error code: the aborted job is there, its retries (no error) are not.
        by_reason = [j.id for j in mlq.jobs(reason="deadline_exceeded", limit=100)]
        assert old.id in by_reason and new.id not in by_reason
        assert old.id in [j["id"] for j in cli_json("jobs", "--reason", "deadline_exceeded", url=url, api_key=key)]
        assert cli_json("jobs", "--reason", "poison_job", url=url, api_key=key) == []
        stalled.start_worker()
        assert new.wait(60).succeeded and new.output["label"] == "setosa"
        assert mlq.job(again_id).wait(60).succeeded
        stalled.stop("worker")  # the fixture starts it again, once
    not_retryable = run_cli("retry", new.id, url=url, api_key=key)
    assert not_retryable.returncode == 2 and "(409 job_not_retryable)" in not_retryable.stderr
    assert "hint: only a failed or aborted job" in not_retryable.stderr


def test_a_full_queue_answers_queue_full_then_fair_share_exceeded_with_retry_after(stalled):
    with as_(stalled, "user", retries=0) as user, as_(stalled, "flood", retries=0) as flood:
        for _ in range(6):
            flood.submit("iris", SETOSA)
        with pytest.raises(mlqueue.Unavailable) as full:
            flood.submit("iris", SETOSA)  # the only key waiting, and the queue full
        assert full.value.status == 503 and full.value.code == "queue_full" and full.value.retry_after > 0
        assert user.submit("iris", SETOSA).status == "queued"  # within its share: admitted even now
        with pytest.raises(mlqueue.RateLimited) as share:
            flood.submit("iris", SETOSA)  # more than its share, with another key waiting
        assert share.value.status == 429 and share.value.code == "fair_share_exceeded"
        assert share.value.retry_after is not None and share.value.retry_after > 0


def test_cli_priority_flags(stack, tmp_path):
    url, bulk = stack.api_url, KEYS["bulk"][0]
    job = cli_json("predict", "iris", "5.1", "3.5", "1.4", "0.2", "--priority", "normal", url=url, api_key=bulk)
    assert job["priority"] == "normal" and job["status"] == "succeeded"
    above = run_cli("predict", "iris", "5.1", "3.5", "1.4", "0.2", "--priority", "high", url=url, api_key=bulk)
    assert above.returncode == 4 and "(403 priority_not_allowed)" in above.stderr and "hint:" in above.stderr
    bad = run_cli("predict", "iris", "5.1", "3.5", "1.4", "0.2", "--priority", "urgent", url=url, api_key=bulk)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    rows = tmp_path / "rows.csv"
    rows.write_text("5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    summary = cli_json(
        "batch",
        "iris",
        str(rows),
        "--priority",
        "low",
        "--out",
        str(tmp_path / "out.csv"),
        url=url,
        api_key=KEYS["user"][0],
    )
    with as_(stack, "user") as mlq:
        assert mlq.job(summary["job"]).priority == "low"
    listed = cli_json("jobs", "--limit", "100", url=url, api_key=KEYS["user"][0])
    assert {j["id"]: j["priority"] for j in listed}[summary["job"]] == "low"


def test_key_options_are_accepted_by_the_server(stack):
    # The stack started with these entries: the server parsed every option create_key wrote.
    assert KEYS["bulk"][1].endswith(":submit|read;weight=0.5;priority=low;max_priority=normal")
    assert KEYS["user"][1].endswith(":submit|read;weight=2")
