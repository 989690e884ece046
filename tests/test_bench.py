"""The benchmark's pieces in a tiny configuration: percentiles, target evaluation, the report, the
inputs (pairwise distinct, handed out without repeats), the load generator split over processes and
its merged results, the CPU-per-job arithmetic, and the naive baseline answering an iris job end to
end. Nothing here asserts performance: the numbers are only printed by ``make bench``."""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import json
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from bench import clients, fairness, load, workloads
from bench import run as bench_run
from bench.data import Pool, digit_pngs, iris_rows
from bench.meter import CpuMeter, PeakRss, cpu_ms_per_job
from bench.report import render
from bench.stats import percentile, summarize, tree_rss_mb
from bench.systems import naive_service
from bench.targets import evaluate, target_values
from shared.images import preprocess_image
from shared.settings import REPO_ROOT


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
        "image_mlqueue": 400.0,
        "image_raw_batched": 1000.0,
        "image_bentoml": 200.0,
        "iris_c64_mlqueue": 1000.0,
        "iris_c64_naive": 68.0,
        "iris_c64_mlqueue_cpu_ms": 1.0,
        "iris_c64_naive_cpu_ms": 8.0,
        "floor_p50_ms": 0.5,
        "idle_p50_ms": 1.9,
        "idle_p99_ms": 4.5,
        "cache_p50_ms": 0.9,
        "batch_rows_per_s": 160_000.0,
        "api_rss_max_mb": 90.0,
        "worker_rss_mb": 800.0,
        "fairness_idle_queue_p50_ms": 2.0,
        "fairness_flood_queue_p50_ms": 3.0,
        "priority_high_queue_ms": 5.0,
        "priority_high_bound_ms": 12.0,
    }
    return {**good, **overrides}


def by_id(rows):
    return {r["id"]: r for r in rows}


def test_targets_all_pass_on_good_numbers():
    rows = evaluate(values())
    assert {r["status"] for r in rows} == {"PASS"}
    assert len(rows) == 12
    assert by_id(rows)["image_vs_raw"]["value"] == pytest.approx(0.4)
    assert by_id(rows)["idle_p50"]["bound"] == pytest.approx(2.0)  # 4 x the HTTP floor's p50
    assert by_id(rows)["idle_p99"]["bound"] == pytest.approx(5.0)  # 10 x the floor's p50
    assert by_id(rows)["cache_p50"]["bound"] == pytest.approx(1.0)
    assert by_id(rows)["iris_c64_cpu_vs_naive"]["bound"] == pytest.approx(2.0)  # a quarter of naive's 8 ms
    assert by_id(rows)["fairness_p50"]["value"] == pytest.approx(1.5)  # flood / idle: a ratio, at most 2
    assert by_id(rows)["priority_high_start"]["bound"] == pytest.approx(12.0)  # idle wait + one chunk pass


@pytest.mark.parametrize(
    ("override", "target", "value"),
    [
        ({"image_bentoml": 300.0}, "image_vs_bentoml", 400 / 300),
        ({"image_mlqueue": 340.0, "image_bentoml": 100.0}, "image_vs_raw", 0.34),
        ({"iris_c64_naive": 250.0}, "iris_c64_vs_naive", 4.0),
        ({"iris_c64_mlqueue_cpu_ms": 2.01}, "iris_c64_cpu_vs_naive", 2.01),
        ({"idle_p50_ms": 2.01}, "idle_p50", 2.01),
        ({"idle_p99_ms": 5.01}, "idle_p99", 5.01),
        ({"cache_p50_ms": 1.01}, "cache_p50", 1.01),
        ({"batch_rows_per_s": 149_999.0}, "batch_100k", 149_999.0),
        ({"api_rss_max_mb": 151.0}, "api_rss", 151.0),
        ({"worker_rss_mb": 1501.0}, "worker_rss", 1501.0),
        ({"fairness_flood_queue_p50_ms": 4.02}, "fairness_p50", 2.01),
        ({"priority_high_queue_ms": 12.1}, "priority_high_start", 12.1),
    ],
)
def test_each_target_misses_just_past_its_bound(override, target, value):
    rows = by_id(evaluate(values(**override)))
    assert rows[target]["status"] == "MISS"
    assert rows[target]["value"] == pytest.approx(value, rel=1e-3)
    assert [r for r in rows.values() if r["status"] != "PASS"] == [rows[target]]


def test_a_slower_floor_loosens_the_latency_bounds():
    """The latency targets scale with the HTTP floor measured in the same run, not a fixed number."""
    slow_machine = by_id(evaluate(values(floor_p50_ms=2.0, idle_p50_ms=7.5, idle_p99_ms=19.0, cache_p50_ms=3.9)))
    assert {slow_machine[k]["status"] for k in ("idle_p50", "idle_p99", "cache_p50")} == {"PASS"}
    fast_floor = by_id(evaluate(values(floor_p50_ms=0.2)))
    assert fast_floor["idle_p50"]["status"] == "MISS" and fast_floor["idle_p50"]["bound"] == pytest.approx(0.8)


def test_miss_says_by_how_much():
    rows = by_id(evaluate(values(iris_c64_naive=400.0, cache_p50_ms=2.5)))
    assert "needs 2.00x more" in rows["iris_c64_vs_naive"]["detail"]
    assert "over by 1.5 ms" in rows["cache_p50"]["detail"]


def test_missing_numbers_are_skipped_not_failed():
    rows = by_id(evaluate(values(image_bentoml=None, iris_c64_naive_cpu_ms=0.0, floor_p50_ms=float("nan"))))
    assert rows["image_vs_bentoml"]["status"] == "SKIP"
    assert rows["iris_c64_cpu_vs_naive"]["status"] == "SKIP"  # a zero base is no measurement
    assert {rows[k]["status"] for k in ("idle_p50", "idle_p99", "cache_p50")} == {"SKIP"}
    assert rows["image_vs_raw"]["status"] == "PASS"
    no_fairness = by_id(evaluate(values(**fairness.target_values(None))))  # the workload did not run
    assert {no_fairness[k]["status"] for k in ("fairness_p50", "priority_high_start")} == {"SKIP"}
    zero_idle = by_id(evaluate(values(fairness_idle_queue_p50_ms=0.0)))
    assert zero_idle["fairness_p50"]["status"] == "SKIP"  # no ratio to a zero wait


def test_target_values_pick_the_right_rows_and_the_report_renders():
    rows = [
        {"workload": "image c=32", "system": "mlqueue", "rate": 300.0, "p50_ms": 60.0, "api_rss_mb": 95.0},
        {"workload": "image c=32", "system": "bentoml", "rate": 250.0, "cpu_ms_per_job": {"server": 6.0}},
        {"workload": "image batch of 32", "system": "raw in-process", "rate": 5000.0},  # no decode: not the base
        {"workload": "image batch of 32, PNG decode incl.", "system": "raw in-process", "rate": 1000.0},
        {"workload": "GET /healthz c=1 (HTTP floor)", "system": "mlqueue API", "p50_ms": 0.5, "api_rss_mb": 80.0},
        {"workload": "idle single iris", "system": "mlqueue", "p50_ms": 1.5, "p99_ms": 30.0, "api_rss_mb": 160.0},
        {
            "workload": "iris c=64",
            "system": "mlqueue",
            "rate": 900.0,
            "cpu_ms_per_job": {"server": 1.5, "api": 1.0, "client": 0.1},
            "client_procs": 2,
            "client_busiest_pct": 41.0,
        },
        {"workload": "iris c=64", "system": "naive", "rate": 100.0, "cpu_ms_per_job": {"server": 9.0}},
        {"workload": "batch 100,000 rows (2 workers)", "system": "mlqueue", "rate": 120_000.0},
    ]
    picked = target_values(rows, {"rss_mb": {"api": 80.0, "worker": 700.0}})
    assert picked["image_mlqueue"] == 300.0 and picked["image_raw_batched"] == 1000.0
    assert picked["iris_c64_mlqueue_cpu_ms"] == 1.5 and picked["iris_c64_naive_cpu_ms"] == 9.0
    assert picked["floor_p50_ms"] == 0.5 and picked["batch_rows_per_s"] == 120_000.0
    assert picked["api_rss_max_mb"] == 160.0  # the highest after any workload, not the last one
    assert picked["cache_p50_ms"] is None
    targets = by_id(evaluate(picked))
    assert targets["image_vs_raw"]["status"] == "MISS" and targets["image_vs_bentoml"]["status"] == "MISS"
    assert targets["idle_p99"]["status"] == "MISS" and targets["idle_p50"]["status"] == "PASS"
    assert targets["iris_c64_cpu_vs_naive"]["status"] == "PASS" and targets["api_rss"]["status"] == "MISS"
    assert targets["cache_p50"]["status"] == "SKIP"
    report = render(
        {
            "quick": True,
            "machine": {"cpu_count": 2, "cpu_model": "test cpu", "python": "3.11", "versions": {}},
            "rows": rows,
            "rss_mb": {"api": 80.0, "worker": 700.0},
            "api_rss_max_mb": 160.0,
            "targets": list(targets.values()),
            "notes": ["a note"],
        }
    )
    assert re.search(r"MISS\s+image jobs c=32 >= 0.35 x raw", report) and "a note" in report
    iris_line = next(line for line in report.splitlines() if line.startswith("iris c=64") and "mlqueue" in line)
    assert re.search(r"900\.0\s+1\.50\s", iris_line) and "0.10,41%" in iris_line  # srv CPU next to jobs/s


def test_inputs_are_distinct_and_valid():
    rows = iris_rows(20_000, seed=1)
    assert len({tuple(r) for r in rows}) == 20_000 and all(len(r) == 4 for r in rows)
    assert iris_rows(50, seed=1) == rows[:50]  # only the seed decides: every system gets the same inputs
    pngs = digit_pngs(400, seed=1)
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    # distinct as the result cache sees an upload: the decoded, resized pixels
    assert len({preprocess_image(p, width=96, height=96) for p in pngs}) == 400


def test_pool_hands_out_disjoint_slices_and_refuses_to_repeat():
    pool = Pool(list(range(10)), "numbers")
    assert pool.take(3) == [0, 1, 2] and pool.take(4) == [3, 4, 5, 6]
    with pytest.raises(ValueError, match="numbers: 4 more wanted, 3 of 10 left"):
        pool.take(4)
    assert pool.fresh().take(2) == [0, 1]  # the next system starts from the same inputs


def test_specs_send_one_body_per_job_and_split_without_overlap():
    spec = load.mlqueue_json("iris", [[float(i), 0.0, 0.0, 0.0] for i in range(10)], wait_s=5)
    assert len({body for body, _ in spec.bodies}) == 10
    assert spec.bodies[0][1]["prefer"] == "wait=5"
    parts = spec.split([4, 3, 3])
    assert [len(p) for p in parts] == [4, 3, 3]
    assert [b for p in parts for b in p.bodies] == list(spec.bodies)
    cached = load.mlqueue_json("iris", [[1.0, 2.0, 3.0, 4.0]], wait_s=5, expect_cached=True, cycle=True)
    assert [len(p) for p in cached.split([2, 2])] == [1, 1]  # the cache workload repeats its row on purpose


def test_plan_splits_jobs_and_concurrency_over_client_processes():
    assert clients.plan(6000, 64, 2) == [(3000, 32), (3000, 32)]
    assert clients.plan(101, 33, 2) == [(51, 17), (50, 16)]
    assert clients.plan(10, 1, 4) == [(10, 1)]  # never more processes than requests in flight
    assert sum(j for j, _ in clients.plan(97, 32, 3)) == 97


def test_merge_pools_the_parts_of_every_client_process():
    a = {"latencies": [0.001, 0.003], "errors": 1, "first_errors": ["Failed: x"], "started": 100.0}
    a |= {"last_done": 101.0, "sent": 3, "requested": 3, "cpu_s": 0.25}
    b = {"latencies": [0.002, 0.004], "errors": 0, "first_errors": [], "started": 100.5, "last_done": 102.0}
    b |= {"sent": 2, "requested": 3, "cpu_s": 0.75}
    out = load.merge([a, b], 6, 8)
    assert out["count"] == 4 and out["errors"] == 1 and out["first_errors"] == ["Failed: x"]
    assert out["elapsed_s"] == pytest.approx(2.0) and out["rate"] == pytest.approx(2.0)  # first start to last answer
    assert out["p50_ms"] == pytest.approx(2.5)  # percentiles over both processes' latencies
    assert out["stopped_early"] is True and out["client_procs"] == 2 and out["concurrency"] == 8
    assert out["client_cpu_s"] == pytest.approx(1.0)
    assert out["client_busiest_pct"] == pytest.approx(50.0)  # b: 0.75 s of CPU in 1.5 s


def test_cpu_per_job_counts_the_server_processes_and_not_the_neighbours():
    cpu = {"client": 0.5, "api": 2.0, "worker": 3.0, "redis": 1.0, "py-spy:api": 4.0, "other": 9.0, "steal": 1.0}
    per = cpu_ms_per_job(cpu, 1000, ["api", "worker", "redis"])
    assert per["server"] == pytest.approx(6.0) and per["api"] == pytest.approx(2.0)
    assert per["client"] == pytest.approx(0.5) and "other" not in per and "steal" not in per
    assert cpu_ms_per_job({"bentoml": 3.0}, 500, ["bentoml"])["server"] == pytest.approx(6.0)
    assert cpu_ms_per_job(cpu, 0, ["api"]) == {}


def test_cpu_meter_moves_the_client_processes_cpu_out_of_other(monkeypatch):
    meter = CpuMeter({"api": 1, "worker": 2}, {"py-spy:api": 3})
    assert meter.server == {"api": 1, "worker": 2}
    readings = iter(
        [
            {"client": 0.0, "api": 1.0, "worker": 1.0, "py-spy:api": 0.0, "machine": 10.0, "steal": 0.0},
            {"client": 0.1, "api": 3.0, "worker": 4.0, "py-spy:api": 0.5, "machine": 18.0, "steal": 0.2},
        ]
    )
    monkeypatch.setattr(meter, "_read", lambda: next(readings))
    meter.start()
    used = meter.stop(client_children_s=1.4)
    assert used["client"] == pytest.approx(1.5) and used["api"] == 2.0 and used["worker"] == 3.0
    assert used["other"] == pytest.approx(8.0 - 1.5 - 2.0 - 3.0 - 0.5) and used["steal"] == pytest.approx(0.2)


def test_the_closed_loop_runs_on_several_processes_and_merges_them():
    """Two spawned load-generator processes against a tiny local HTTP server: every job answered once."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # http.server calls do_<METHOD>
            hits.append(self.rfile.read(int(self.headers["content-length"])).decode())
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    started = []
    try:
        bodies = tuple((f"job {i}".encode(), {"content-type": "text/plain"}) for i in range(30))
        spec = load.Spec("bento", "/classify", bodies)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        out, samples = clients.closed_loop(url, spec, 30, 4, 60, 2, on_start=lambda: started.append(len(hits)))
    finally:
        server.shutdown()
        server.server_close()
    assert out["count"] == 30 and out["errors"] == 0 and out["client_procs"] == 2, out
    assert sorted(hits) == sorted(f"job {i}" for i in range(30))  # each body sent exactly once
    assert started == [0] and samples == []  # the go came once, after connecting and before any job


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
                call = load.make_call(http, load.naive_iris([[6.7, 3.0, 5.2, 2.3 + i / 10] for i in range(4)]))
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


@pytest.mark.integration
def test_the_fairness_workload_runs_in_a_tiny_size_and_prints_the_waits(tmp_path, monkeypatch, capsys):
    """``python -m bench.run --quick --only fairness`` with a 5,000-row batch and 5 jobs per phase:
    two keys on a real stack; the report prints every wait and the two fairness and priority targets."""
    models = tmp_path / "models"  # iris only: the worker starts in seconds
    shutil.copytree(REPO_ROOT / "models" / "iris", models / "iris")
    monkeypatch.setenv("MLQUEUE_MODELS_DIR", str(models))
    monkeypatch.setattr(workloads, "QUICK", dataclasses.replace(workloads.QUICK, fairness_sizes=fairness.TINY))
    out = tmp_path / "fairness.json"
    bench_run.main(["--quick", "--only", "fairness", "--out", str(out)])
    printed = capsys.readouterr().out
    for field in (
        "key B alone, single jobs one at a time:",
        "key B while key A's 5,000-row batch runs:",
        "queue p50",
        "latency p50",
        "batch done when B's jobs finished",
        "B's p50 queue wait, flood / idle:",
        "high jobs from A over its queued 5,000-row low batch: queue p50",
        "positions at submit [1",
        "one chunk's forward pass",
        "B's idle p50 + one pass:",
        "the first finished before the batch: ",
    ):
        assert field in printed, field
    assert re.search(r"(PASS|MISS|SKIP)\s+key B's p50 queue wait while key A floods <= 2 x idle", printed)
    assert re.search(r"(PASS|MISS)\s+high jobs over a low batch: p50 wait <= idle p50 \+ 1 chunk pass", printed)
    result = json.loads(out.read_text())["fairness"]
    assert result["idle"]["count"] == 5 and result["idle"]["errors"] == 0
    assert result["idle"]["queue_p50_ms"] is not None
    assert result["flood"]["errors"] == 0 and result["flood"]["rounds"]
    assert all(r["status"] == "succeeded" for r in result["flood"]["rounds"])
    assert result["priority"]["status"] == "succeeded" and result["priority"]["batch_status"] == "succeeded"
    assert result["priority"]["batch_chunks"] == 10  # 5,000 rows in chunks of 500
    assert isinstance(result["priority"]["finished_before_batch"], bool)
    assert 1 <= result["priority"]["high_jobs"] <= 2 and result["priority"]["positions"][0] == 1


def test_fairness_target_values_add_the_idle_wait_to_one_chunk_pass():
    result = {"idle": {"queue_p50_ms": 4.0}, "flood": {"queue_p50_ms": 6.0}, "priority": {"queue_ms": 5.0}}
    result["priority"]["chunk_predict_ms"] = 2.0
    picked = fairness.target_values(result)
    assert picked["priority_high_bound_ms"] == pytest.approx(6.0) and picked["fairness_flood_queue_p50_ms"] == 6.0
    targets = by_id(evaluate(values(**picked)))
    assert targets["fairness_p50"]["status"] == "PASS" and targets["fairness_p50"]["value"] == pytest.approx(1.5)
    assert targets["priority_high_start"]["status"] == "PASS"
    no_pass = fairness.target_values({**result, "priority": {"queue_ms": 5.0, "chunk_predict_ms": None}})
    assert no_pass["priority_high_bound_ms"] is None  # a batch without predict_ms: SKIP, not a bound of 4 ms
