"""``python -m bench.capacity``: the measured inputs of the capacity model (docs/capacity.md).

``python -m bench.capacity [--tiny] [--models iris,wine,anomaly,digits] [--out bench/results/capacity.json]``

Starts a private stack (Redis + one worker + the API, ``bench.systems``), then for each model
submits N jobs with distinct inputs through the public HTTP API only (``POST /v1/models/{m}/jobs``
with ``Prefer: wait``, 32 in flight) and reads, around each model's run:

- Redis ``INFO memory`` ``used_memory``: bytes per job still held once the job is finished (its
  record, result, indexes and tombstone: what it costs for the job TTL);
- Redis ``INFO commandstats``: commands per job, in total and by command;
- CPU seconds (``/proc``) of the worker, the API and Redis per job: jobs/s per worker core is
  1 / worker CPU seconds per job, and 1 / Redis CPU seconds per job is what one Redis core could
  carry, the ceiling of a single primary.

An idle stretch before the runs measures what the stack does on its own (heartbeats, the sweeper,
metrics): that background rate is subtracted. A second, iris-only stack with a 2-second job TTL
measures what a job leaves in Redis after its TTL (the tombstone, until the tombstone TTL), read
after every job answered ``410 expired``. No internals are read: the Redis figures are whole-server
deltas, so they stay true when the queueing internals change. ``--tiny`` is a smoke run for the
test suite (its numbers mean little). Each system shares this machine's cores with the load
generator: CPU per job is the figure to trust, jobs/s of the run only says what this box did.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from bench import load
from bench.console import say
from bench.data import digit_pngs, iris_rows
from bench.stats import Json, cpu_model, tree_cpu_s
from bench.systems import mlqueue_stack, stack_pids
from devtools.processes import Stack
from shared.manifests import FeaturesInput, ModelManifest, ModelRepository
from shared.settings import REPO_ROOT

# bench.systems's stack (the product's defaults, cache off, rate limits out of the way: one client IP)
# with one BLAS/TensorFlow thread per worker: "per core" figures stay per core.
WORKER_THREADS = "1"
# Commands this script itself sends to Redis to measure it.
OWN_COMMANDS = {"info", "dbsize", "ping", "scan", "memory", "config"}
CONCURRENCY = 32
WAIT_S = 30


@dataclass(frozen=True)
class Sizes:
    jobs: dict[str, int] = field(default_factory=lambda: {"iris": 2000, "wine": 2000, "anomaly": 2000, "digits": 300})
    expiry_jobs: int = 1000
    idle_s: float = 5.0


TINY = Sizes(jobs={"iris": 20, "wine": 20, "anomaly": 20, "digits": 8}, expiry_jobs=20, idle_s=1.0)


# --- inputs -------------------------------------------------------------------------------------


def feature_rows(manifest: ModelManifest, n: int, seed: int) -> list[list[float]]:
    """``n`` distinct positional rows for a features model, each value drawn inside the range its
    manifest describes ("range 11.03–14.83", "about 20–48.3"), else in [0, 1]."""
    if manifest.name == "iris":
        return iris_rows(n, seed)
    if not isinstance(manifest.input, FeaturesInput):
        raise ValueError(f"{manifest.name}: not a features model")
    bounds = []
    for feature in manifest.input.features:
        found = re.search(r"(-?\d+(?:\.\d+)?)\s*[–-]\s*(-?\d+(?:\.\d+)?)", feature.description or "")
        bounds.append((float(found.group(1)), float(found.group(2))) if found else (0.0, 1.0))
    rng = random.Random(seed)
    rows: list[list[float]] = []
    seen: set[tuple[float, ...]] = set()
    while len(rows) < n:
        row = [round(rng.uniform(lo, hi), 6) for lo, hi in bounds]
        if tuple(row) not in seen:
            seen.add(tuple(row))
            rows.append(row)
    return rows


def spec_for(manifest: ModelManifest, n: int, seed: int = 11) -> load.Spec:
    if manifest.input.type == "image":
        return load.mlqueue_image(manifest.name, digit_pngs(n, seed), WAIT_S)
    return load.mlqueue_json(manifest.name, feature_rows(manifest, n, seed), WAIT_S)


# --- what Redis and the processes did -----------------------------------------------------------


@dataclass
class Reading:
    at: float
    used_memory: int
    keys: int
    calls: dict[str, int]
    cpu_s: dict[str, float]


def read(r: redis.Redis, pids: dict[str, int]) -> Reading:
    stats = r.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return Reading(
        at=time.monotonic(),
        used_memory=int(r.info("memory")["used_memory"]),
        keys=int(r.dbsize()),
        calls=calls,
        cpu_s={name: tree_cpu_s(pid) for name, pid in pids.items()},
    )


def command_delta(before: Reading, after: Reading) -> dict[str, int]:
    out = {}
    for name, calls in after.calls.items():
        if name.split("|")[0] in OWN_COMMANDS:
            continue
        delta = calls - before.calls.get(name, 0)
        if delta:
            out[name] = delta
    return out


@dataclass
class Background:
    """What the idle stack does per second on its own: subtracted from every run."""

    commands_per_s: dict[str, float]
    cpu_per_s: dict[str, float]

    @classmethod
    def measure(cls, r: redis.Redis, pids: dict[str, int], seconds: float) -> Background:
        before = read(r, pids)
        time.sleep(seconds)
        after = read(r, pids)
        span = after.at - before.at
        commands = {k: v / span for k, v in command_delta(before, after).items()}
        cpu = {k: (after.cpu_s[k] - before.cpu_s[k]) / span for k in pids}
        return cls(commands, cpu)


def per_job(before: Reading, after: Reading, jobs: int, background: Background) -> Json:
    span = after.at - before.at
    commands = {}
    for name, calls in command_delta(before, after).items():
        net = calls - background.commands_per_s.get(name, 0.0) * span
        if net / jobs >= 0.05:  # below that: background noise, not the job
            commands[name] = round(net / jobs, 2)
    cpu_ms = {
        k: round(max(0.0, after.cpu_s[k] - before.cpu_s[k] - background.cpu_per_s[k] * span) * 1000 / jobs, 3)
        for k in after.cpu_s
    }
    return {
        "redis_bytes_per_job": round((after.used_memory - before.used_memory) / jobs),
        "redis_keys_per_job": round((after.keys - before.keys) / jobs, 2),
        "redis_commands_per_job": round(sum(commands.values()), 1),
        "redis_commands_by_name": dict(sorted(commands.items(), key=lambda kv: -kv[1])),
        "cpu_ms_per_job": cpu_ms,
    }


# --- the runs -----------------------------------------------------------------------------------


def settle(r: redis.Redis, seconds: float = 1.0) -> None:
    """Let the last completions' writes and acknowledgements land before reading."""
    time.sleep(seconds)
    r.ping()


def run_model(stack: Stack, r: redis.Redis, manifest: ModelManifest, n: int, background: Background) -> Json:
    spec = spec_for(manifest, n)
    pids = stack_pids(stack)

    async def drive() -> Json:
        async with load.client(stack.api_url, CONCURRENCY) as http:
            return await load.closed_loop(load.make_call(http, spec), n, CONCURRENCY, max_s=300)

    keys_before = key_bytes(r)  # before the reading: its SCAN and MEMORY USAGE stay out of the deltas
    before = read(r, pids)
    summary = asyncio.run(drive())
    settle(r)
    after = read(r, pids)
    keys_after = key_bytes(r)
    done = summary["count"]
    if done == 0 or summary["errors"]:
        raise RuntimeError(f"{manifest.name}: {summary['errors']} errors, e.g. {summary['first_errors']}")
    row = {
        "model": manifest.name,
        "version": manifest.version,
        "jobs": done,
        **per_job(before, after, done, background),
        "redis_key_bytes_per_job": round((keys_after - keys_before) / done),
    }
    worker_ms = row["cpu_ms_per_job"]["worker"]
    redis_ms = row["cpu_ms_per_job"]["redis"]
    row["jobs_per_s_per_worker_core"] = round(1000 / worker_ms, 1) if worker_ms else None
    row["jobs_per_s_per_redis_core"] = round(1000 / redis_ms) if redis_ms else None
    row["run"] = {k: summary[k] for k in ("rate", "p50_ms", "p99_ms", "elapsed_s", "client_cpu_s")}
    return row


def measure_models(tmp: Path, sizes: Sizes, models: list[str]) -> tuple[Json, list[Json]]:
    manifests = ModelRepository(REPO_ROOT / "models").models()
    with mlqueue_stack(tmp / "main", worker_threads=WORKER_THREADS) as stack:
        r = redis.Redis.from_url(stack.redis.url)
        pids = stack_pids(stack)
        for name in models:  # a few jobs first: first-call costs (imports, allocator growth) out of the numbers
            manifest = manifests[name][max(manifests[name])]
            warm = spec_for(manifest, 4, seed=99)

            async def warm_up(spec: load.Spec = warm) -> Json:
                async with load.client(stack.api_url, 4) as http:
                    return await load.closed_loop(load.make_call(http, spec), 4, 4, max_s=120)

            asyncio.run(warm_up())
        settle(r)
        say(f"idle stack for {sizes.idle_s:.0f} s (background to subtract)", sys.stderr)
        background = Background.measure(r, pids, sizes.idle_s)
        rows = []
        for name in models:
            manifest = manifests[name][max(manifests[name])]
            say(f"{name} v{manifest.version}: {sizes.jobs[name]} jobs", sys.stderr)
            rows.append(run_model(stack, r, manifest, sizes.jobs[name], background))
        server = r.info("server")
        redis_info = {"redis_version": server["redis_version"], "maxmemory_policy": r.config_get("maxmemory-policy")}
    background_out = {
        "redis_commands_per_s": round(sum(background.commands_per_s.values()), 1),
        "cpu_ms_per_s": {k: round(v * 1000, 1) for k, v in background.cpu_per_s.items()},
    }
    return {"redis": redis_info, "background": background_out}, rows


def key_bytes(r: redis.Redis) -> int:
    """``MEMORY USAGE`` summed over every key, whatever its name: what the keys hold, without the
    keyspace's own hash tables (``used_memory`` counts those, sized for the most keys there ever were)."""
    total, batch = 0, []
    for key in r.scan_iter(count=1000):
        batch.append(key)
        if len(batch) == 1000:
            total += _usage(r, batch)
            batch = []
    return total + _usage(r, batch)


def _usage(r: redis.Redis, keys: list[bytes]) -> int:
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(n or 0 for n in pipe.execute())  # None: the key expired in between


def measure_expiry(tmp: Path, n: int) -> Json:
    """What a job leaves behind once its TTL has passed: iris jobs with a 2 s job TTL on a stack of its
    own (iris only, so it starts fast), read after every job's ``GET`` answered 410."""
    models_dir = tmp / "models"
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "iris")
    ttl_s = 2
    with mlqueue_stack(
        tmp / "expiry", worker_threads=WORKER_THREADS, models_dir=str(models_dir), job_ttl_s=str(ttl_s)
    ) as stack:
        r = redis.Redis.from_url(stack.redis.url)
        rows = iris_rows(n, seed=5)

        async def submit_and_expire() -> list[int]:
            async with load.client(stack.api_url, CONCURRENCY) as http:
                headers = {**load.JSON, "prefer": f"wait={WAIT_S}"}
                ids: list[str] = []
                gate = asyncio.Semaphore(CONCURRENCY)

                async def one(row: list[float]) -> None:
                    async with gate:
                        body = json.dumps({"input": row}).encode()
                        resp = await http.post("/v1/models/iris/jobs", content=body, headers=headers)
                        job = load.check_finished(resp, expect_cached=False)
                        ids.append(job["id"])

                await asyncio.gather(*(one(row) for row in rows))
                await asyncio.sleep(ttl_s + 1.5)

                async def status(job_id: str) -> int:
                    async with gate:
                        return (await http.get(f"/v1/jobs/{job_id}")).status_code

                return list(await asyncio.gather(*(status(i) for i in ids)))

        before = (int(r.info("memory")["used_memory"]), key_bytes(r))
        statuses = asyncio.run(submit_and_expire())
        # Keys with a TTL go at Redis's active expiry pace: wait until the key count stops falling.
        keys, last = int(r.dbsize()), -1
        deadline = time.monotonic() + 15
        while keys != last and time.monotonic() < deadline:
            time.sleep(1.0)
            keys, last = int(r.dbsize()), keys
        after = (int(r.info("memory")["used_memory"]), key_bytes(r))
    gone = sum(1 for s in statuses if s == 410)
    if gone != n:
        raise RuntimeError(f"expiry: {gone} of {n} jobs answered 410 after their TTL ({set(statuses)})")
    return {
        "jobs": n,
        "job_ttl_s": ttl_s,
        "expired_bytes_per_job": round((after[0] - before[0]) / n),
        "expired_key_bytes_per_job": round((after[1] - before[1]) / n),
    }


def machine() -> Json:
    return {"cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version()}


def git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        return out.stdout.strip()
    return ""


def render(result: Json) -> str:
    lines = [
        f"bench.capacity {result['date']}  commit {result['commit']}  {result['machine']['cpu_count']} CPUs "
        f"({result['machine']['cpu_model']}), Redis {result['redis']['redis_version']}",
        "",
        f"{'model':<9}{'jobs':>6}{'worker ms':>11}{'jobs/s/core':>13}{'API ms':>8}{'Redis ms':>10}"
        f"{'Redis cmds':>12}{'Redis B':>9}{'in keys':>9}{'keys':>6}{'run jobs/s':>12}",
    ]
    for row in result["rows"]:
        cpu = row["cpu_ms_per_job"]
        lines.append(
            f"{row['model']:<9}{row['jobs']:>6}{cpu['worker']:>11.3f}{row['jobs_per_s_per_worker_core'] or 0:>13.1f}"
            f"{cpu['api']:>8.3f}{cpu['redis']:>10.3f}{row['redis_commands_per_job']:>12.1f}"
            f"{row['redis_bytes_per_job']:>9}{row['redis_key_bytes_per_job']:>9}{row['redis_keys_per_job']:>6.1f}"
            f"{row['run']['rate']:>12.1f}"
        )
    lines.append("")
    for row in result["rows"]:
        top = ", ".join(f"{k} {v}" for k, v in list(row["redis_commands_by_name"].items())[:8])
        lines.append(f"{row['model']}: {top}")
    expiry = result.get("expiry")
    if expiry:
        lines.append(
            f"after the job TTL, until the tombstone TTL: {expiry['expired_key_bytes_per_job']} B/job in keys, "
            f"{expiry['expired_bytes_per_job']} B/job of used_memory (keyspace tables not shrunk; "
            f"{expiry['jobs']} iris jobs)"
        )
    background = result["background"]
    lines.append(
        f"background (subtracted): {background['redis_commands_per_s']} Redis commands/s, "
        f"CPU ms/s {background['cpu_ms_per_s']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Json:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke run of a few jobs (the test suite's)")
    parser.add_argument("--models", default="iris,wine,anomaly,digits")
    parser.add_argument("--no-expiry", action="store_true", help="skip the after-TTL measurement")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "capacity.json")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else Sizes()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in sizes.jobs]
    if unknown:
        parser.error(f"unknown model(s) {unknown}: choose from {sorted(sizes.jobs)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlqueue-capacity-") as tmp:
        info, rows = measure_models(Path(tmp), sizes, models)
        expiry = None if args.no_expiry else measure_expiry(Path(tmp), sizes.expiry_jobs)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python -m bench.capacity", *(argv if argv is not None else sys.argv[1:])]),
        "commit": git_commit(),
        "tiny": args.tiny,
        "machine": machine(),
        "sizes": asdict(sizes),
        **info,
        "rows": rows,
        "expiry": expiry,
        "took_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    say(f"written to {args.out} in {result['took_s']} s", sys.stderr)
    return result


if __name__ == "__main__":
    main()
