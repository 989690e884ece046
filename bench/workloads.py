"""What ``bench.run`` can run: the workload families ``--only`` picks from, the row names the targets
look up, and how many jobs each workload gets in a full and a ``--quick`` run. One place, so that
the orchestration, the targets and the tests agree on every name and size."""

from __future__ import annotations

from dataclasses import dataclass

from bench import fairness

FAMILIES = ("raw", "idle", "iris", "image", "batch", "cache", "fairness")
# Workload names the targets look up (bench.targets.target_values).
FLOOR = "GET /healthz c=1 (HTTP floor)"
IDLE = "idle single iris"
IRIS64 = "iris c=64"
IMAGE = "image c=32"
CACHE = "cache hit (same row)"
RAW_IMAGE = "image batch of 32, PNG decode incl."


@dataclass(frozen=True)
class Sizes:
    raw_s: float = 3.0
    idle: int = 300
    iris_c1: int = 2_000
    iris_c64: int = 6_000
    images: int = 500
    batch_rows: int = 100_000
    cache: int = 1_000
    max_s: float = 20.0  # per timed workload
    naive_image_max_s: float = 45.0
    fairness_sizes: fairness.FairnessSizes = fairness.FULL


QUICK = Sizes(
    raw_s=1.0,
    idle=40,
    iris_c1=150,
    iris_c64=600,
    images=96,
    batch_rows=10_000,
    cache=100,
    max_s=8.0,
    naive_image_max_s=15.0,
    fairness_sizes=fairness.QUICK,
)


def parse_only(only: str | None) -> set[str]:
    """``--only iris,image``: the families named (all when none); SystemExit naming an unknown one."""
    wanted = set(FAMILIES) if not only else {w.strip() for w in only.split(",") if w.strip()}
    unknown = wanted - set(FAMILIES)
    if unknown:
        raise SystemExit(f"--only: unknown workloads {sorted(unknown)}; choose from {', '.join(FAMILIES)}")
    return wanted
