"""(b) of ``make bench``: the workloads run against mlqueue through its HTTP API, each family on a
stack of its own so the settings it needs (two workers, the cache on, two API keys) touch no other
number: single jobs idle and under load, images, the 100k-row batch, cache hits, fairness."""

from __future__ import annotations

import functools

import httpx

from bench import fairness, load
from bench.console import say
from bench.meter import CpuMeter, PeakRss
from bench.session import Session
from bench.stats import tree_rss_mb
from bench.systems import mlqueue_stack, stack_pids
from bench.workloads import CACHE, FLOOR, IDLE, IMAGE, IRIS64


async def run_mlqueue(s: Session) -> None:
    """Redis + one worker + the API (cache off): the idle, iris and image families."""
    say("(b) mlqueue: Redis + worker + API (cache off)")
    iris, pngs = s.iris.fresh(), s.pngs.fresh()

    def healthz(n: int) -> load.Spec:
        return load.get("/healthz")

    def iris_jobs(n: int) -> load.Spec:
        return load.mlqueue_json("iris", iris.take(n), wait_s=10)

    def image_jobs(n: int, wait_s: int = 30) -> load.Spec:
        return load.mlqueue_image("digits", pngs.take(n), wait_s=wait_s)

    with mlqueue_stack(s.tmp / "mlqueue") as stack:
        pids = stack_pids(stack)
        url, meter, sizes, drive = stack.api_url, CpuMeter(pids), s.sizes, s.driver
        profiled = {"api": pids["api"], "worker": pids["worker"]}  # py-spy reads Python processes only
        s.record.extra["mlqueue_settings"] = {k: v for k, v in stack.env.items() if k.startswith("MLQUEUE_")}
        with s.record.api(pids["api"]):
            async with load.client(url, 64, s.client_kind) as http:
                if s.wants("idle"):
                    # The HTTP floor: the API answering a no-op through the same client, one at a time.
                    await drive.sequential(FLOOR, "mlqueue API", http, healthz, sizes.idle, 20, 0.02, meter)
                    await drive.sequential(IDLE, "mlqueue", http, iris_jobs, sizes.idle, 20, 0.02, meter, timeline=True)
                    if s.has_image:
                        idle_images = functools.partial(image_jobs, wait_s=10)
                        n = min(sizes.idle, 200)
                        await drive.sequential(
                            "idle single image", "mlqueue", http, idle_images, n, 10, 0.02, meter, timeline=True
                        )
                if s.wants("iris"):
                    n, max_s = sizes.iris_c64, sizes.max_s
                    await drive.measure("GET /healthz c=64", "mlqueue API", url, http, healthz, 4 * n, 64, 5, meter)
                    await drive.measure("iris c=1", "mlqueue", url, http, iris_jobs, sizes.iris_c1, 1, max_s, meter)
                    await drive.measure(IRIS64, "mlqueue", url, http, iris_jobs, n, 64, max_s, meter, profiled, True)
                if s.wants("image") and s.has_image:
                    n, max_s = sizes.images, 3 * sizes.max_s
                    await drive.measure(IMAGE, "mlqueue", url, http, image_jobs, n, 32, max_s, meter, profiled, True)
        rss = s.record.extra["rss_mb"] = {"api": tree_rss_mb(pids["api"]), "worker": tree_rss_mb(pids["worker"])}
        s.record.extra["readyz"] = httpx.get(f"{url}/readyz", timeout=5).json()
        say(f"  RSS after the workloads: API {rss['api']} MB, worker {rss['worker']} MB")


async def run_batch(s: Session) -> None:
    """The 100k-row batch on a stack of its own: two worker processes, one per core, each with one
    BLAS/TF thread (MLQUEUE_WORKER_THREADS=1), so the chunks run on both cores."""
    say("(b) mlqueue batch: Redis + 2 workers (MLQUEUE_WORKER_THREADS=1 each) + API")
    rows = s.batch.fresh()
    with mlqueue_stack(s.tmp / "mlqueue-batch", workers=2, worker_threads="1") as stack:
        pids = stack_pids(stack)
        profile = {"api": pids["api"], "worker": pids["worker"]}
        with s.record.api(pids["api"]):
            async with load.client(stack.api_url, 2, s.client_kind) as http:
                await load.mlqueue_batch(http, "iris", rows.take(2_000), 60)  # warm-up
                batch = rows.take(s.sizes.batch_rows)
                s.profiler.start("batch", profile, 60)
                meter = CpuMeter(pids, s.profiler.pids())
                watched = {name: pid for name, pid in pids.items() if name != "redis"}
                before_mb = {name: tree_rss_mb(pid) for name, pid in watched.items()}
                meter.start()
                try:
                    with PeakRss(watched) as rss:
                        result = await load.mlqueue_batch(http, "iris", batch, 180)
                except load.Failed as exc:
                    s.record.notes.append(f"batch failed: {exc}")
                    return
                finally:
                    s.record.profiles.update(s.profiler.stop())
                cpu = meter.stop()
            memory = {"rss_before_mb": before_mb, "rss_peak_mb": rss.peak_mb}
            s.record.extra["batch"] = {**result, "cpu_s": cpu, **memory}
            if result["succeeded_lines"] != len(batch):
                s.record.notes.append(f"batch: {result['succeeded_lines']} of {len(batch)} result lines succeeded")
            row = {
                "rate": result["rate"],
                "p50_ms": None,
                "p95_ms": None,
                "p99_ms": None,
                "count": len(batch),
                "errors": len(batch) - result["succeeded_lines"],
                "elapsed_s": result["elapsed_s"],
                "client_cpu_s": result["client_cpu_s"],
            }
            s.record.add(f"batch {len(batch):,} rows (2 workers)", "mlqueue", row, cpu, server=list(meter.server))
    say(f"    submit {result['submit_s']} s, run {result['run_s']} s, stream {result['stream_s']} s")
    peaks = ", ".join(f"{k} {before_mb[k]} -> {rss.peak_mb[k]} MB" for k in watched)
    say(f"    RSS before -> peak: {peaks} (request body {result['body_mb']} MB)")


async def run_cache(s: Session) -> None:
    """The result cache on (a stack of its own): one row asked again and again, every answer a hit."""
    say("(b) mlqueue with the result cache on (MLQUEUE_CACHE_TTL_S=3600)")
    with mlqueue_stack(s.tmp / "mlqueue-cache", cache_ttl_s="3600") as stack:
        pids = stack_pids(stack)
        with s.record.api(pids["api"]):
            async with load.client(stack.api_url, 1, s.client_kind) as http:
                if not any(r["workload"] == FLOOR for r in s.record.rows):  # the cache target compares with it
                    get = lambda n: load.get("/healthz")  # noqa: E731
                    await s.driver.sequential(FLOOR, "mlqueue API", http, get, s.sizes.idle, 20, 0.02, CpuMeter(pids))
                # The one workload where repeats are the point: one row, asked again and again.
                row = s.iris.fresh().take(1)
                await load.sequential(load.make_call(http, load.mlqueue_json("iris", row, wait_s=5)), 1, 0, 10)
                spec = load.mlqueue_json("iris", row, wait_s=5, expect_cached=True, cycle=True)
                call = load.make_call(http, spec)
                await load.sequential(call, 20, 0, 10)
                s.profiler.start("cache", {"api": pids["api"]}, s.sizes.max_s)
                meter = CpuMeter(pids, s.profiler.pids())
                meter.start()
                result = await load.sequential(call, s.sizes.cache, 0.0, s.sizes.max_s)
                cpu = meter.stop()
                s.record.profiles.update(s.profiler.stop())
                s.record.add(CACHE, "mlqueue", result, cpu, server=list(meter.server))


async def run_fairness(s: Session) -> None:
    """Fairness and priority: keys A and B (weight 1) on a stack of their own; ``bench.fairness`` drives it."""
    say("(b) mlqueue fairness: keys A and B; B alone, B while A floods, A's high job over its low batch")
    tokens, keys = fairness.make_keys()
    sizes = s.sizes.fairness_sizes
    chunk_rows = str(sizes.chunk_rows)
    with mlqueue_stack(s.tmp / "mlqueue-fairness", api_keys=keys, batch_chunk_rows=chunk_rows) as stack:
        pids = stack_pids(stack)
        with s.record.api(pids["api"]):
            meter = CpuMeter(pids)
            result = await fairness.run(stack.api_url, tokens, sizes, meter)
            cpu = result["idle"].pop("cpu_s", None)
            s.record.add("fairness: key B alone", "mlqueue", result["idle"], cpu, server=list(meter.server))
            s.record.add("fairness: key B, key A flooding", "mlqueue", result["flood"])
    s.record.extra["fairness"] = result
    for line in fairness.report_lines(result)[3:]:
        say(line)
