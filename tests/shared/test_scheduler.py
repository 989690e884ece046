"""The scheduler's line against a real Redis: order, fairness, priorities, claims, give-backs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

import pytest

from shared.redis_keys import queue_keys
from shared.scheduler import (
    Priority,
    Scheduler,
    Work,
    chunk_member,
    enqueue,
    items_ahead,
    queue_state,
    register_enqueue,
)
from shared.store import async_redis_client, redis_client

STEP = 50_000


def put(settings, items: Sequence[Work], queue: str = "cpu", step: float = STEP) -> list[int]:
    """Enqueue ``items`` the way the API does (one script call in a transaction); their ranks."""

    async def scenario() -> list[int]:
        client = async_redis_client(settings)
        try:
            async with client.pipeline(transaction=True) as pipe:
                await enqueue(pipe, register_enqueue(client), queue, items, time.time(), step, 3600)
                (reply,) = await pipe.execute()
            return [int(r) for r in reply[1:]]
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def drain_order(scheduler: Scheduler, queue: str = "cpu", max_items: int = 1) -> list[str]:
    order = []
    while claims := scheduler.claim(queue, "w#1", max_items):
        order += [c.member for c in claims]
        scheduler.release(queue, [c.member for c in claims])
    return order


@pytest.fixture
def scheduler(redis_settings) -> Iterator[Scheduler]:
    client = redis_client(redis_settings)
    yield Scheduler(client)
    client.close()


def test_one_keys_work_runs_in_the_order_it_was_sent(redis_settings, scheduler):
    put(redis_settings, [Work(f"J{i}", "key:a") for i in range(5)])
    assert drain_order(scheduler) == [f"J{i}" for i in range(5)]


def test_a_single_job_of_another_key_overtakes_a_big_batch(redis_settings, scheduler):
    batch = [Work(chunk_member("BATCH", c), "key:a", rows=5000) for c in range(20)]
    put(redis_settings, batch)
    scheduler.release("cpu", [c.member for c in scheduler.claim("cpu", "w#1")])  # chunk 0 is running
    (rank,) = put(redis_settings, [Work("SINGLE", "key:b")])
    assert rank == 0  # its start is V, chunk 0's start: every chunk left starts later
    assert drain_order(scheduler)[0] == "SINGLE"


def test_keys_share_a_busy_queue_by_weight(redis_settings, scheduler):
    put(redis_settings, [Work(f"A{i}", "key:a", rows=100, weight=3) for i in range(30)])
    put(redis_settings, [Work(f"B{i}", "key:b", rows=100, weight=1) for i in range(30)])
    first = drain_order(scheduler)[:40]
    a = sum(m.startswith("A") for m in first)
    assert a == pytest.approx(30, abs=1)  # 3 : 1, while both have work waiting


def test_high_overtakes_normal_and_low_within_their_steps(redis_settings, scheduler):
    put(redis_settings, [Work(chunk_member("LOW", c), "key:a", Priority.LOW, rows=5000) for c in range(10)])
    put(redis_settings, [Work(f"N{i}", "key:b") for i in range(3)])
    put(redis_settings, [Work("HIGH", "key:c", Priority.HIGH)])
    order = drain_order(scheduler)
    assert order[0] == "HIGH"
    assert order[1:4] == ["N0", "N1", "N2"]
    assert order[4:] == [chunk_member("LOW", c) for c in range(10)]


def test_low_work_is_not_starved_once_it_is_two_steps_old(redis_settings, scheduler):
    step = 10
    put(redis_settings, [Work("LOW", "key:a", Priority.LOW)], step=step)
    # A stream of high jobs from many keys: virtual time moves on with each, and once it passes
    # the low job's tag (its start + 2 steps), later high jobs no longer go first.
    served = []
    for i in range(40):
        put(redis_settings, [Work(f"H{i}", f"key:h{i % 4}", Priority.HIGH, rows=5)], step=step)
        claims = scheduler.claim("cpu", "w#1", 1)
        served.append(claims[0].member)
        scheduler.release("cpu", [claims[0].member])
    assert "LOW" in served


def test_claims_take_singles_together_and_a_chunk_alone(redis_settings, scheduler):
    put(redis_settings, [Work("J1", "k"), Work("J2", "k"), Work(chunk_member("B", 0), "k", rows=10), Work("J3", "k")])
    assert [c.member for c in scheduler.claim("cpu", "w#1")] == ["J1", "J2"]
    assert [c.member for c in scheduler.claim("cpu", "w#1")] == [chunk_member("B", 0)]
    assert [c.member for c in scheduler.claim("cpu", "w#1")] == ["J3"]
    assert scheduler.claim("cpu", "w#1") == []


def test_claimed_work_given_back_returns_to_its_place_and_counts_deliveries(redis_settings, scheduler):
    r = scheduler.r
    put(redis_settings, [Work("J1", "k"), Work("J2", "k")])
    (first,) = scheduler.claim("cpu", "w#1", 1)
    assert (first.member, first.deliveries) == ("J1", 1)
    assert r.hget(queue_keys("cpu").claimed, "J1").startswith("w#1|")
    assert scheduler.requeue("cpu", "J1", "w#2|0") == 0  # not that claim: nothing done
    assert scheduler.requeue("cpu", "J1", first.claim) == 1
    again = scheduler.claim("cpu", "w#1", 1)
    assert [(c.member, c.deliveries) for c in again] == [("J1", 2)]  # its old place, ahead of J2
    assert scheduler.requeue("cpu", "J1", again[0].claim, max_deliveries=2) == 2  # a dead letter
    assert r.zscore(queue_keys("cpu").ready, "J1") is None
    scheduler.release("cpu", ["J1"])
    assert r.hget(queue_keys("cpu").meta, "J1") is None


def test_the_line_reports_backlog_age_drain_rate_and_place(redis_settings, scheduler):
    put(redis_settings, [Work(f"J{i}", "key:a") for i in range(4)] + [Work("B1", "key:b")])
    scheduler.release("cpu", [c.member for c in scheduler.claim("cpu", "w#1", 2)])

    async def read():
        client = async_redis_client(redis_settings)
        try:
            return (
                await queue_state(client, "cpu"),
                await items_ahead(client, "cpu", "J3"),
                await items_ahead(client, "cpu", "J0"),
            )
        finally:
            await client.aclose()

    state, ahead, claimed = asyncio.run(read())
    assert state.backlog == 3
    assert state.per_key == {"key:a": 3}  # B1 started at V with J0: both claimed
    assert state.drain_rate == pytest.approx(2 / 10)
    assert 0 <= state.oldest_age_s < 5
    assert ahead == 2  # J1, J2
    assert claimed is None  # claimed: no longer in line


def test_stale_fair_share_clocks_are_pruned(redis_settings, scheduler):
    put(redis_settings, [Work(f"A{i}", "key:a") for i in range(3)] + [Work("B1", "key:b", rows=1000)])
    put(redis_settings, [Work(f"C{i}", "key:c") for i in range(5)])
    drain_order(scheduler)  # V is now C4's start, 4; key:a finished at 3
    assert set(scheduler.r.hgetall(queue_keys("cpu").clock)) == {"V", "F|key:a|1", "F|key:b|1", "F|key:c|1"}
    assert scheduler.prune_clock("cpu") == 1
    assert set(scheduler.r.hgetall(queue_keys("cpu").clock)) == {"V", "F|key:b|1", "F|key:c|1"}


def test_a_claim_that_leaves_work_waiting_wakes_another_worker(redis_settings, scheduler):
    r = scheduler.r
    put(redis_settings, [Work(chunk_member("B", c), "k", rows=10) for c in range(3)])
    scheduler.claim("cpu", "w#1", ticket="T1")
    assert r.lrange("cpu", 0, -1) == ["T1"]  # work left, no ticket waiting: one is queued
    scheduler.claim("cpu", "w#1", ticket="T2")
    assert r.lrange("cpu", 0, -1) == ["T1"]  # one waits already: no second
    r.delete("cpu")
    scheduler.claim("cpu", "w#1", ticket="T3")
    assert r.llen("cpu") == 0  # nothing left in line: nobody to wake


def test_a_claim_without_chunks_takes_the_single_jobs_behind_them(redis_settings, scheduler):
    put(redis_settings, [Work(chunk_member("B", c), "key:a", rows=10) for c in range(2)])
    put(redis_settings, [Work("J1", "key:a"), Work("J2", "key:a")])  # behind key:a's own chunks
    assert [c.member for c in scheduler.claim("cpu", "w#1", chunks=False)] == ["J1", "J2"]
    assert scheduler.claim("cpu", "w#1", chunks=False) == []  # only chunks left: nothing, no ticket
    assert scheduler.r.llen("cpu") == 0
    assert [c.member for c in scheduler.claim("cpu", "w#1")] == [chunk_member("B", 0)]
