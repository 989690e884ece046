"""The benchmark's pieces in a tiny configuration: percentiles, target evaluation, the report, the
load generator's HTTP client, and the naive baseline answering an iris job end to end. Nothing here
asserts performance: the numbers are only printed by ``make bench``."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from pathlib import Path

import pytest

from bench import load
from bench.data import digit_pngs, iris_rows
from bench.run import PeakRss, naive_service, render, target_values, tree_rss_mb
from bench.stats import percentile, summarize
from bench.targets import evaluate


def test_percentile_on_known_data():
    values = list(range(1, 11))  # 1..10, shuffled order must not matter
    shuffled = values[::-1]
    assert percentile(shuffled, 0) == 1
    assert percentile(shuffled, 100) == 10
    assert percentile(shuffled, 50) == pytest.approx(5.5)
    assert percentile(shuffled, 90) == pytest.approx(9.1)  # numpy's default (linear) method
    assert percentile([4.0], 99) == 4.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summarize_reports_rate_and_milliseconds():
    out = summarize([0.001, 0.002, 0.003, 0.004], 2.0, errors=1)
    assert out["count"] == 4 and out["errors"] == 1 and out["rate"] == 2.0
    assert out["p50_ms"] == pytest.approx(2.5)
    batched = summarize([0.01, 0.01], 1.0, items=64)
    assert batched["rate"] == 64.0


def values(**overrides):
    """Numbers where every target passes; each test breaks one."""
    good = {
        "image_mlqueue": 900.0,
        "image_raw_batched": 1000.0,
        "image_naive": 16.0,
        "image_bentoml": 70.0,
        "iris_c64_mlqueue": 1000.0,
        "iris_c64_naive": 68.0,
        "idle_p50_ms": 4.0,
        "idle_p99_ms": 15.0,
        "predict_p50_ms": 0.3,
        "predict_p99_ms": 0.5,
        "batch_rows_per_s": 150_000.0,
        "cache_p50_ms": 1.5,
        "api_rss_mb": 90.0,
        "worker_rss_mb": 800.0,
    }
    return {**good, **overrides}


def by_id(rows):
    return {r["id"]: r for r in rows}


def test_targets_all_pass_on_good_numbers():
    rows = evaluate(values())
    assert {r["status"] for r in rows} == {"PASS"}
    assert by_id(rows)["image_vs_raw"]["value"] == pytest.approx(0.9)
    assert by_id(rows)["idle_p50"]["bound"] == pytest.approx(5.3)  # predict + 5 ms


@pytest.mark.parametrize(
    ("override", "target", "value"),
    [
        ({"image_mlqueue": 700.0}, "image_vs_raw", 0.7),
        ({"image_naive": 100.0}, "image_vs_naive", 9.0),
        ({"image_bentoml": 901.0}, "image_vs_bentoml", 900 / 901),
        ({"iris_c64_naive": 250.0}, "iris_c64_vs_naive", 4.0),
        ({"idle_p50_ms": 5.31}, "idle_p50", 5.31),
        ({"idle_p99_ms": 21.0}, "idle_p99", 21.0),
        ({"batch_rows_per_s": 99_999.0}, "batch_100k", 99_999.0),
        ({"cache_p50_ms": 3.01}, "cache_p50", 3.01),
        ({"api_rss_mb": 151.0}, "api_rss", 151.0),
        ({"worker_rss_mb": 1501.0}, "worker_rss", 1501.0),
    ],
)
def test_each_target_misses_just_past_its_bound(override, target, value):
    rows = by_id(evaluate(values(**override)))
    assert rows[target]["status"] == "MISS"
    assert rows[target]["value"] == pytest.approx(value, rel=1e-3)
    assert [r for r in rows.values() if r["status"] != "PASS"] == [rows[target]]


def test_miss_says_by_how_much():
    rows = by_id(evaluate(values(iris_c64_naive=400.0, cache_p50_ms=4.5)))
    assert "needs 2.00x more" in rows["iris_c64_vs_naive"]["detail"]
    assert "over by 1.5 ms" in rows["cache_p50"]["detail"]


def test_missing_numbers_are_skipped_not_failed():
    rows = by_id(evaluate(values(image_bentoml=None, image_naive=0.0, predict_p50_ms=float("nan"))))
    assert rows["image_vs_bentoml"]["status"] == "SKIP"
    assert rows["image_vs_naive"]["status"] == "SKIP"  # a zero denominator is no measurement
    assert rows["idle_p50"]["status"] == "SKIP"
    assert rows["idle_p99"]["status"] == "PASS"


def test_target_values_pick_the_right_rows_and_the_report_renders():
    rows = [
        {"workload": "image c=32", "system": "mlqueue", "rate": 500.0, "p50_ms": 60.0},
        {"workload": "image c=32", "system": "naive", "rate": 20.0},
        {"workload": "image batch of 32", "system": "raw in-process", "rate": 1000.0},
        {"workload": "iris x1 (predict_batch of 1)", "system": "raw in-process", "p50_ms": 0.3, "p99_ms": 0.6},
        {"workload": "idle single iris", "system": "mlqueue", "p50_ms": 4.0, "p99_ms": 30.0},
        {"workload": "batch 100,000 rows", "system": "mlqueue", "rate": 120_000.0},
    ]
    picked = target_values(rows, {"rss_mb": {"api": 80.0, "worker": 700.0}})
    assert picked["image_mlqueue"] == 500.0 and picked["image_raw_batched"] == 1000.0
    assert picked["predict_p99_ms"] == 0.6 and picked["batch_rows_per_s"] == 120_000.0
    assert picked["image_bentoml"] is None
    targets = by_id(evaluate(picked))
    assert targets["image_vs_raw"]["status"] == "MISS" and targets["image_vs_naive"]["status"] == "PASS"
    assert targets["idle_p99"]["status"] == "MISS" and targets["image_vs_bentoml"]["status"] == "SKIP"
    report = render(
        {
            "quick": True,
            "machine": {"cpu_count": 2, "cpu_model": "test cpu", "python": "3.11", "versions": {}},
            "rows": rows,
            "rss_mb": {"api": 80.0, "worker": 700.0},
            "targets": list(targets.values()),
            "notes": ["a note"],
        }
    )
    assert re.search(r"MISS\s+image jobs e2e >= 0.8 x raw", report) and "a note" in report


def test_inputs_are_distinct_and_valid():
    rows = iris_rows(200, seed=1)
    assert len({tuple(r) for r in rows}) == 200 and all(len(r) == 4 for r in rows)
    pngs = digit_pngs(3, seed=1)
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)


@pytest.mark.integration
def test_naive_baseline_answers_an_iris_job_end_to_end(tmp_path: Path):
    """The tutorial service (prefork Celery worker + uvicorn), driven by the benchmark's own client."""
    with naive_service(tmp_path) as (url, pids):
        assert set(pids) == {"api", "worker", "redis"}

        async def drive():
            async with load.client(url, 2) as http:
                body = json.dumps({"features": [6.7, 3.0, 5.2, 2.3]}).encode()
                submitted = (await http.post("/predict/iris", content=body, headers=load.JSON)).json()
                for _ in range(600):  # up to 60 s: the prefork pool may still be starting
                    state = (await http.get(f"/result/{submitted['task_id']}")).json()
                    if state["status"] == "SUCCESS":
                        break
                    await asyncio.sleep(0.1)
                call = load.naive_job(http, "/predict/iris", [(body, load.JSON)], poll_s=0.05)
                return state, await load.closed_loop(call, 4, 2, 60)

        state, summary = asyncio.run(drive())
    assert state["status"] == "SUCCESS", state
    assert state["result"]["label"] == "virginica"
    assert summary["count"] == 4 and summary["errors"] == 0, summary


def test_profile_summary_attributes_samples():
    from bench.profile import summarize_profile

    collapsed = "\n".join(
        [
            "main (worker/__main__.py:35);asynloop (celery/worker/loops.py:130);publish (redis/client.py:1) 6",
            "_worker (concurrent/futures/thread.py:83);fast_trace_task (celery/app/trace.py:798);"
            "run_job (worker/execution.py:91);get_with_input (shared/store.py:305);execute (redis/client.py:2) 3",
            "_worker (concurrent/futures/thread.py:83);fast_trace_task (celery/app/trace.py:798);"
            "predict_batch (worker/families/tabular.py:25);predict_proba (sklearn/pipeline.py:925) 1",
            "not a sample line",
        ]
    )
    summary = summarize_profile(collapsed)
    assert summary["samples"] == 10
    assert dict(map(tuple, summary["by_thread"])) == {"celery consumer loop": 0.6, "task threads": 0.4}
    assert dict(map(tuple, summary["by_package"])) == {"redis-py": 0.9, "model": 0.1}
    functions = dict(map(tuple, summary["by_mlqueue_function"]))
    assert functions["get_with_input (shared/store.py)"] == 0.3
    assert functions["predict_batch (worker/families/tabular.py)"] == 0.1
    assert summarize_profile("")["by_thread"] == []


def test_peak_rss_sees_memory_that_is_gone_by_the_end():
    base = tree_rss_mb(os.getpid())
    with PeakRss({"me": os.getpid()}) as rss:
        ballast = bytearray(200 * 2**20)
        ballast[::4096] = b"x" * len(ballast[::4096])  # touched: 200 MB resident while it lives
        time.sleep(0.2)
        del ballast
        time.sleep(0.1)
    assert rss.peak_mb["me"] > base + 150
    assert tree_rss_mb(os.getpid()) < base + 50  # gone by the end: only the peak saw it
