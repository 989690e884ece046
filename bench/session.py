"""One ``bench.run``: what was asked (sizes, families, client), the inputs every system draws from
(sized here for every warm-up and timed workload, so no input is sent twice to one stack), and the
record and driver the workloads share."""

from __future__ import annotations

import time
from pathlib import Path

from bench.console import say
from bench.data import Pool, digit_pngs, iris_rows
from bench.drive import Driver
from bench.profile import Profiler
from bench.record import Record
from bench.workloads import Sizes
from shared.settings import REPO_ROOT

IMAGE_MANIFEST = REPO_ROOT / "models" / "digits" / "1" / "manifest.json"


class Session:
    def __init__(
        self, sizes: Sizes, only: set[str], tmp: Path, profile_dir: Path | None, client_kind: str, client_procs: int
    ) -> None:
        self.sizes = sizes
        self.only = only
        self.tmp = tmp
        self.client_kind = client_kind
        self.record = Record()
        self.profiler = Profiler(profile_dir)
        self.driver = Driver(self.record, self.profiler, client_kind, client_procs, sizes.max_s)
        say("generating inputs (pairwise distinct)")
        s = sizes
        # Per system: every warm-up and timed job of a stack takes its own slice (bench.data.Pool).
        iris_n = 20 + s.idle + 2 + s.iris_c1 + 64 + s.iris_c64 + 100
        png_n = 10 + min(s.idle, 200) + 64 + s.images + 16
        self.iris = Pool(iris_rows(iris_n, seed=3), "iris rows")
        self.batch = Pool(iris_rows(s.batch_rows + 2_000, seed=4), "batch rows")
        self.pngs = Pool(digit_pngs(png_n, seed=5), "digit PNGs")
        self.has_image = IMAGE_MANIFEST.exists()

    def wants(self, family: str) -> bool:
        return family in self.only

    def wait_for_image_model(self, timeout_s: float) -> None:
        """The image model may still be training (``make models`` in another terminal): wait for it."""
        deadline = time.monotonic() + timeout_s
        while not IMAGE_MANIFEST.exists() and time.monotonic() < deadline:
            time.sleep(5)
        self.has_image = IMAGE_MANIFEST.exists()
        if not self.has_image:
            self.record.notes.append("image workloads skipped: models/digits/1/manifest.json does not exist")
