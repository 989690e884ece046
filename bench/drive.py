"""How one timed workload is driven and measured, the same way for every system: an untimed warm-up
on inputs of its own, then the timed phase with the CPU meter (and py-spy) around it, a closed loop
over ``--client-procs`` load-generator processes when more than one request is in flight, or one
request at a time; the result becomes a row of the record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bench import clients, load
from bench.meter import CpuMeter
from bench.profile import Profiler
from bench.record import Record
from bench.stats import Json

SpecFor = Callable[[int], load.Spec]  # n → a spec of n jobs, each with inputs no other job had


class Driver:
    def __init__(self, record: Record, profiler: Profiler, client_kind: str, client_procs: int, max_s: float) -> None:
        self.record = record
        self.profiler = profiler
        self.client_kind = client_kind
        self.client_procs = client_procs
        self.max_s = max_s  # a one-at-a-time workload's time limit

    async def measure(
        self,
        workload: str,
        system: str,
        url: str,
        http: load.HttpClient,
        spec_for: SpecFor,
        n: int,
        concurrency: int,
        max_s: float,
        meter: CpuMeter,
        profile: dict[str, int] | None = None,
        timeline: bool = False,
    ) -> Json:
        """Warm up (untimed, inputs of its own), then the timed closed loop, with CPU accounting
        (and a profile); over ``client_procs`` processes when more than one request is in flight."""
        warm = min(2 * concurrency, 64)
        await load.closed_loop(load.make_call(http, spec_for(warm)), warm, concurrency, 30)
        spec = spec_for(n)
        if profile:
            self.profiler.start(workload.replace(" ", "_").replace("=", ""), profile, max_s)
            meter = meter.with_tools(self.profiler.pids())
        tl = load.Timeline() if timeline else None
        try:
            if self.client_procs > 1 and concurrency > 1:
                result, samples = await asyncio.to_thread(
                    clients.closed_loop,
                    url,
                    spec,
                    n,
                    concurrency,
                    max_s,
                    self.client_procs,
                    self.client_kind,
                    timeline,
                    meter.start,
                )
                cpu = meter.stop(client_children_s=result["client_cpu_s"])
                if tl is not None:
                    tl.samples.extend(samples)
            else:
                call = load.make_call(http, spec, tl)
                meter.start()
                result = await load.closed_loop(call, n, concurrency, max_s)
                cpu = meter.stop()
        finally:
            if profile:
                self.record.profiles.update(self.profiler.stop())
        self.record.add(workload, system, result, cpu, tl, list(meter.server))
        return result

    async def sequential(
        self,
        workload: str,
        system: str,
        http: load.HttpClient,
        spec_for: SpecFor,
        n: int,
        warm: int,
        gap_s: float,
        meter: CpuMeter,
        timeline: bool = False,
    ) -> None:
        """One request at a time (``gap_s`` apart: each finds the stack idle), after ``warm`` untimed."""
        await load.sequential(load.make_call(http, spec_for(warm)), warm, gap_s, 10)
        tl = load.Timeline() if timeline else None
        call = load.make_call(http, spec_for(n), tl)
        meter.start()
        result = await load.sequential(call, n, gap_s, self.max_s)
        self.record.add(workload, system, result, meter.stop(), tl, list(meter.server))
