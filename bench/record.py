"""What one run found, as it is found: the table's rows (each with its CPU ms per job and the API's
RSS after it), the notes that make a number less trustworthy, and the extra sections of the results
file. Every row is also printed as a progress line the moment it is added."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psutil

from bench import load
from bench.console import say
from bench.meter import cpu_ms_per_job
from bench.stats import Json, tree_rss_mb


class Record:
    def __init__(self) -> None:
        self.rows: list[Json] = []
        self.notes: list[str] = []
        self.extra: Json = {}
        self.profiles: Json = {}
        self._api_pid: int | None = None  # the live mlqueue API: its RSS is sampled after every workload

    @contextlib.contextmanager
    def api(self, pid: int) -> Iterator[None]:
        """While an mlqueue stack runs: every mlqueue row gets its API's RSS after the workload."""
        self._api_pid = pid
        try:
            yield
        finally:
            self._api_pid = None

    def warn(self, note: str) -> None:
        self.notes.append(note)
        say(f"    warning: {note}")

    def add(
        self,
        workload: str,
        system: str,
        result: Json,
        cpu: dict[str, float] | None = None,
        timeline: load.Timeline | None = None,
        server: list[str] | tuple[str, ...] = (),
    ) -> None:
        """A row of the table from one workload's ``result`` and its ``cpu`` seconds by process
        (``server``: the processes that are the system under test)."""
        row = {"workload": workload, "system": system, **result}
        if cpu is not None:
            row["cpu_s"] = cpu
            if row.get("count"):
                row["cpu_ms_per_job"] = cpu_ms_per_job(cpu, row["count"], server)
        if timeline is not None and timeline.samples:
            row["breakdown_ms"] = timeline.summary()
        if system.startswith("mlqueue") and self._api_pid is not None:
            with contextlib.suppress(psutil.Error):
                row["api_rss_mb"] = tree_rss_mb(self._api_pid)
                self.extra["api_rss_max_mb"] = max(self.extra.get("api_rss_max_mb", 0.0), row["api_rss_mb"])
        self.rows.append(row)
        self._say(row, bool(server))
        if cpu and cpu.get("other", 0) > 0.1 * max(row.get("elapsed_s") or 0, 1e-9) * (os.cpu_count() or 1):
            self.warn(f"{workload} / {system}: other processes used {cpu['other']} CPU-s during it (a busy machine)")
        if row.get("client_busiest_pct", 0) > 80:
            self.warn(
                f"{workload} / {system}: a load-generator process was {row['client_busiest_pct']}% busy: "
                "the client may be the bottleneck (raise --client-procs)"
            )
        if "breakdown_ms" in row:
            parts = ", ".join(f"{k} {v['p50_ms']}" for k, v in row["breakdown_ms"].items())
            say(f"    p50 breakdown (ms): {parts}")

    @staticmethod
    def _say(row: Json, has_server: bool) -> None:
        rate, p50, p99 = row.get("rate"), row.get("p50_ms"), row.get("p99_ms")
        err = f", {row['errors']} errors" if row.get("errors") else ""
        srv = (row.get("cpu_ms_per_job") or {}).get("server")
        srv_text = f"  server {srv:.2f} CPU-ms/job" if srv is not None and has_server else ""
        latency = f"  p50 {p50} ms  p99 {p99} ms" if p50 is not None else ""
        say(f"  {row['workload']:<24} {row['system']:<18} {rate:>10,.1f}/s{latency}{srv_text}{err}")
