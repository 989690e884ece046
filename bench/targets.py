"""The benchmark's targets (per-job cost, fairness, priority), the numbers they compare picked from
one run's rows, and each evaluated: PASS or MISS and by how much (SKIP when a number is missing,
e.g. no image model or no BentoML). Every ratio and every scaled bound compares two numbers
measured in the same run, on the same machine."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench import fairness
from bench.stats import Json
from bench.workloads import CACHE, FLOOR, IDLE, IMAGE, IRIS64, RAW_IMAGE


@dataclass(frozen=True)
class Target:
    id: str
    text: str
    kind: str  # "ratio_at_least" | "ratio_at_most" | "at_most" | "at_least"
    numerator: str  # the measured value (for ratios: the one divided)
    limit: float
    denominator: str | None = None  # ratios: the value divided by
    scale_by: str | None = None  # at_most/at_least: the bound is limit x this measured value
    unit: str = ""


TARGETS: tuple[Target, ...] = (
    Target(
        "image_vs_bentoml",
        "image jobs c=32 >= 1.5 x BentoML (same model)",
        "ratio_at_least",
        "image_mlqueue",
        1.5,
        "image_bentoml",
        unit="x",
    ),
    Target(
        "image_vs_raw",
        "image jobs c=32 >= 0.35 x raw batched (decode incl.)",
        "ratio_at_least",
        "image_mlqueue",
        0.35,
        "image_raw_batched",
        unit="x",
    ),
    Target(
        "iris_c64_vs_naive",
        "iris jobs c=64 >= 5 x naive jobs/s",
        "ratio_at_least",
        "iris_c64_mlqueue",
        5.0,
        "iris_c64_naive",
        unit="x",
    ),
    Target(
        "iris_c64_cpu_vs_naive",
        "iris c=64 server CPU/job <= 1/4 of naive's",
        "at_most",
        "iris_c64_mlqueue_cpu_ms",
        0.25,
        scale_by="iris_c64_naive_cpu_ms",
        unit="ms",
    ),
    Target(
        "idle_p50",
        "idle single job (Prefer: wait) p50 <= 4 x HTTP floor p50",
        "at_most",
        "idle_p50_ms",
        4.0,
        scale_by="floor_p50_ms",
        unit="ms",
    ),
    Target(
        "idle_p99",
        "idle single job (Prefer: wait) p99 <= 10 x HTTP floor p50",
        "at_most",
        "idle_p99_ms",
        10.0,
        scale_by="floor_p50_ms",
        unit="ms",
    ),
    Target(
        "cache_p50",
        "cache hit (Prefer: wait) p50 <= 2 x HTTP floor p50",
        "at_most",
        "cache_p50_ms",
        2.0,
        scale_by="floor_p50_ms",
        unit="ms",
    ),
    Target(
        "batch_100k",
        "100,000-row batch, 2 workers >= 150,000 rows/s",
        "at_least",
        "batch_rows_per_s",
        150_000,
        unit="rows/s",
    ),
    Target(
        "fairness_p50",
        "key B's p50 queue wait while key A floods <= 2 x idle",
        "ratio_at_most",
        "fairness_flood_queue_p50_ms",
        2.0,
        "fairness_idle_queue_p50_ms",
        unit="x",
    ),
    Target(
        "priority_high_start",
        "high jobs over a low batch: p50 wait <= idle p50 + 1 chunk pass",
        "at_most",
        "priority_high_queue_ms",
        1.0,
        scale_by="priority_high_bound_ms",
        unit="ms",
    ),
    Target("api_rss", "API RSS after every workload <= 150 MB", "at_most", "api_rss_max_mb", 150.0, unit="MB"),
    Target(
        "worker_rss",
        "worker with every shipped model loaded RSS <= 1.5 GB",
        "at_most",
        "worker_rss_mb",
        1500.0,
        unit="MB",
    ),
)


def target_values(rows: list[Json], extra: Json) -> Json:
    """The numbers the targets compare, picked from this run's rows."""

    def get(workload: str, system: str, field: str = "rate") -> object:
        for row in rows:
            if row["workload"] == workload and row["system"] == system:
                if field == "server_cpu_ms":
                    return (row.get("cpu_ms_per_job") or {}).get("server")
                return row.get(field)
        return None

    batch = [r for r in rows if r["workload"].startswith("batch ") and r["system"] == "mlqueue"]
    rss = extra.get("rss_mb", {})
    api_rss = [r["api_rss_mb"] for r in rows if r.get("api_rss_mb") is not None]
    return {
        "image_mlqueue": get(IMAGE, "mlqueue"),
        "image_raw_batched": get(RAW_IMAGE, "raw in-process"),
        "image_bentoml": get(IMAGE, "bentoml"),
        "iris_c64_mlqueue": get(IRIS64, "mlqueue"),
        "iris_c64_naive": get(IRIS64, "naive"),
        "iris_c64_mlqueue_cpu_ms": get(IRIS64, "mlqueue", "server_cpu_ms"),
        "iris_c64_naive_cpu_ms": get(IRIS64, "naive", "server_cpu_ms"),
        "floor_p50_ms": get(FLOOR, "mlqueue API", "p50_ms"),
        "idle_p50_ms": get(IDLE, "mlqueue", "p50_ms"),
        "idle_p99_ms": get(IDLE, "mlqueue", "p99_ms"),
        "cache_p50_ms": get(CACHE, "mlqueue", "p50_ms"),
        "batch_rows_per_s": batch[0]["rate"] if batch else None,
        "api_rss_max_mb": max(api_rss, default=None),
        "worker_rss_mb": rss.get("worker"),
        **fairness.target_values(extra.get("fairness")),
    }


def _num(values: Json, key: str | None) -> float | None:
    value = values.get(key) if key else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def evaluate(values: Json, targets: tuple[Target, ...] = TARGETS) -> list[Json]:
    """One row per target: the measured value, the bound it had to meet, PASS/MISS/SKIP and how far off."""
    out = []
    for t in targets:
        row: Json = {"id": t.id, "target": t.text, "unit": t.unit}
        measured = _num(values, t.numerator)
        bound: float | None
        if t.kind.startswith("ratio_"):
            base = _num(values, t.denominator)
            value = None if measured is None or not base else measured / base
            bound = t.limit
        elif t.scale_by:
            base = _num(values, t.scale_by)
            value, bound = measured, None if not base else base * t.limit
        else:
            value, bound = measured, t.limit
        if value is None or bound is None:
            out.append({**row, "value": None, "bound": bound, "status": "SKIP", "detail": "not measured in this run"})
            continue
        at_least = t.kind.endswith("at_least")
        ok = value >= bound if at_least else value <= bound
        out.append(
            {
                **row,
                "value": round(value, 3),
                "bound": round(bound, 3),
                "status": "PASS" if ok else "MISS",
                "detail": _detail(value, bound, at_least, ok, t.unit),
            }
        )
    return out


def _detail(value: float, bound: float, at_least: bool, ok: bool, unit: str) -> str:
    """How far from the bound, as a factor of it and in the target's unit."""
    factor = value / bound if bound else math.inf
    diff = value - bound
    if at_least:
        if ok:
            return f"{factor:.2f}x the bound (+{diff:,.3g} {unit})"
        return (
            f"{factor:.2f}x the bound: short by {-diff:,.3g} {unit} (needs {bound / value:.2f}x more)"
            if value
            else (f"short by {-diff:,.3g} {unit}")
        )
    if ok:
        return f"{-diff:,.3g} {unit} under the bound"
    return f"over by {diff:,.3g} {unit} ({factor:.2f}x the bound)"
