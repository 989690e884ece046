"""Metering: CPU seconds of each process tree of the system under test, of the load generator and of
everything else on the machine over a timed phase, turned into CPU ms per job; and the peak RSS of
process trees while a workload runs. All read from /proc, so no system needs instrumenting."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil

from bench.stats import tree_cpu_s, tree_rss_mb


class PeakRss:
    """The highest RSS of each named process tree while it runs, sampled every 20 ms in a thread
    (the 100k-row batch: does the API or a worker ever hold the whole batch at once?)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_mb = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for name, pid in self.pids.items():
                with contextlib.suppress(psutil.Error):
                    self.peak_mb[name] = max(self.peak_mb[name], tree_rss_mb(pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class CpuMeter:
    """CPU seconds used by each named process tree of the system under test (``server``) between
    ``start`` and ``stop``, by the load generator (``client``: this process plus what its client
    processes report), by measuring tools (``tools``: py-spy, counted apart) and by everything else
    on the machine (``other``: a busy neighbour makes the numbers unreliable). Read from /proc."""

    def __init__(self, server: dict[str, int], tools: dict[str, int] | None = None) -> None:
        self.server = dict(server)
        self.tools = dict(tools or {})
        self.pids = {**self.server, **self.tools}
        self.before: dict[str, float] = {}

    def with_tools(self, tools: dict[str, int]) -> CpuMeter:
        return CpuMeter(self.server, tools)

    def _read(self) -> dict[str, float]:
        out = {"client": time.process_time()}
        for name, pid in self.pids.items():
            out[name] = tree_cpu_s(pid)
        machine = psutil.cpu_times()
        out["machine"] = machine.user + machine.nice + machine.system + getattr(machine, "softirq", 0)
        out["steal"] = getattr(machine, "steal", 0.0)  # a hypervisor taking the vCPUs away
        return out

    def start(self) -> None:
        self.before = self._read()

    def stop(self, client_children_s: float = 0.0) -> dict[str, float]:
        """``client_children_s``: the CPU the load-generator processes reported for the same span."""
        after = self._read()
        used = {k: max(0.0, after[k] - self.before.get(k, 0.0)) for k in after}
        used["client"] += client_children_s
        machine = used.pop("machine")
        steal = used.pop("steal")
        used["other"] = max(0.0, machine - sum(used.values()))
        used["steal"] = steal
        return {k: round(v, 3) for k, v in used.items()}


def cpu_ms_per_job(cpu: dict[str, float], count: int, server: list[str] | tuple[str, ...]) -> dict[str, float]:
    """CPU milliseconds per finished job: each process, ``server`` (the system under test's
    processes summed: API + worker(s) + Redis, or BentoML's tree) and ``client``. Not ``other``
    (neighbours) nor ``steal``. Errors are not jobs: a failing system does not look cheap."""
    if count <= 0:
        return {}
    per = {k: round(v * 1000 / count, 3) for k, v in cpu.items() if k not in ("other", "steal")}
    per["server"] = round(sum(cpu.get(k, 0.0) for k in server) * 1000 / count, 3)
    return per
