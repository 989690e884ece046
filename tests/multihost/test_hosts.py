"""Multi-host tier: Redis, the API, the workers and the clients each on a host of their own.

Hosts are network namespaces on one bridge (``tests.multihost.netns``): Redis on A, the API on B,
workers on C and D (and F, the one that joins late), the clients on E. Every process binds and
advertises its host's 10.77.0.x address, as it would on separate machines; nothing is on loopback.

Skipped, with the reason, where namespaces cannot be made (not root, no iproute2, not permitted).
Deselect the tier with ``-m "not multihost"``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from devtools.processes import Stack, make_stack
from devtools.redis_server import RedisServer
from devtools.server_process import free_port
from shared.settings import REPO_ROOT
from tests.multihost import netns
from tests.multihost.load import iris_models

pytestmark = [pytest.mark.integration, pytest.mark.fault, pytest.mark.multihost]

HOSTS = ["a", "b", "c", "d", "e", "f"]
HEARTBEAT_S = 1.0
SWEEP_INTERVAL_S = 0.5
RECOVER_AFTER_S = 3.0
# A worker cut off or killed holds jobs running (sent again once its presence expires: 3 beats)
# and jobs reserved (sent again after recover_after_s); each plus two sweeps.
BOUND_S = max(3 * HEARTBEAT_S, RECOVER_AFTER_S) + 2 * SWEEP_INTERVAL_S
# The host-loss tests start with a batch whose chunks keep both workers busy, so D is lost with
# work in hand (single iris jobs take a millisecond: a worker holds none most of the time), and
# cut as soon as the batch is in: a worker claims one chunk at a time, a short batch is over at once.
BATCH_ROWS = 100_000
BATCH_CHUNK_ROWS = 250


@dataclass
class Fleet:
    hosts: netns.Hosts
    stack: Stack
    tmp: Path
    started: dict[str, float] = field(default_factory=dict)  # worker name -> when it was started

    def worker(self, host: str) -> str:
        """Start a worker on ``host``; its Celery node name (``C@…``)."""
        name = host.upper()
        self.started[name] = time.time()
        self.stack.start_worker(name, prefix=self.hosts.prefix(host))
        return name

    def client(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """Run the client program on host E, to its end."""
        return subprocess.run(
            [*self.hosts.prefix("e"), sys.executable, "-m", "tests.multihost.netns_client", *args],
            cwd=REPO_ROOT,
            env=self.stack.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def wait_workers(self, *names: str) -> list[dict]:
        """Until each named worker is ready (this start of it, not a previous one's presence)."""
        args = ["--need", ",".join(f"{n}={self.started[n]}" for n in names), "--timeout", "90"]
        done = self.client("ready", self.stack.api_url, *args)
        assert done.returncode == 0, f"{done.stderr}\n{self.stack.log('api')}\n{self.stack.log('C')}"
        return json.loads(done.stdout)["workers"]

    def start_load(
        self, count: int, name: str, pause_s: float = 0.02, batch_rows: int = 0
    ) -> tuple[subprocess.Popen, Path]:
        out = self.tmp / f"{name}.json"
        args = ["load", self.stack.api_url, "--count", str(count), "--pause", str(pause_s), "--out", str(out)]
        args += ["--batch-rows", str(batch_rows)]
        proc = subprocess.Popen(
            [*self.hosts.prefix("e"), sys.executable, "-m", "tests.multihost.netns_client", *args, "--timeout", "60"],
            cwd=REPO_ROOT,
            env=self.stack.env,
        )
        return proc, out

    def recovered(self, worker: str) -> int:
        """How many times this worker's sweeper has sent work again (its whole log)."""
        path = self.tmp / f"{worker}.log"
        return path.read_text(errors="replace").count("job.recovered") if path.exists() else 0

    def holds_claim(self, worker: str, timeout_s: float = 60, freeze: bool = False) -> bool:
        """Whether a claim on the cpu line names ``worker`` within ``timeout_s``; ``freeze``: and
        leave its process stopped (SIGSTOP) while it holds that claim, so a fault then catches it."""
        args = ["holding", self.stack.env["MLQUEUE_REDIS_URL"], "--worker", worker, "--timeout", str(timeout_s)]
        if freeze:
            args += ["--freeze", str(self.stack.procs[worker].pid)]  # it leads its own process group
        return self.client(*args).returncode == 0

    @staticmethod
    def accepted(out: Path) -> list[tuple[float, str]]:
        path = Path(f"{out}.accepted")
        lines = path.read_text().splitlines() if path.exists() else []
        return [(float(at), job_id) for at, job_id in (line.split() for line in lines if " " in line)]

    def wait_accepted(self, out: Path, count: int, timeout_s: float = 60) -> float:
        deadline = time.monotonic() + timeout_s
        while len(self.accepted(out)) < count:
            assert time.monotonic() < deadline, f"the load did not get {count} jobs accepted"
            time.sleep(0.05)
        return time.time()

    @staticmethod
    def finish(proc: subprocess.Popen, out: Path) -> dict:
        assert proc.wait(180) == 0
        return json.loads(out.read_text())


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    why = netns.unavailable()
    if why:
        pytest.skip(f"multi-host tier skipped: {why}")
    tmp = tmp_path_factory.mktemp("hosts")
    hosts = netns.Hosts(HOSTS).up()
    stack = None
    try:
        redis = RedisServer(
            data_dir=tmp / "redis", host=hosts.address("a"), port=free_port(), command_prefix=hosts.prefix("a")
        ).start()
        stack = make_stack(
            tmp,
            redis=redis,
            api_host=hosts.address("b"),
            models_dir=str(iris_models(tmp)),
            heartbeat_interval_s=str(HEARTBEAT_S),
            sweep_interval_s=str(SWEEP_INTERVAL_S),
            recover_after_s=str(RECOVER_AFTER_S),
            worker_concurrency="4",
            batch_chunk_rows=str(BATCH_CHUNK_ROWS),
        )
        stack.api_prefix = hosts.prefix("b")
        stack.start_api()
        fleet = Fleet(hosts, stack, tmp)
        fleet.worker("c")
        fleet.wait_workers("C")
        yield fleet
    finally:
        if stack is not None:
            stack.stop_all()
        hosts.down()


@pytest.fixture
def worker_d(fleet: Fleet) -> Iterator[str]:
    """A worker on D for one test; its link restored and the process gone afterwards."""
    name = fleet.worker("d")
    try:
        yield name
    finally:
        fleet.hosts.link("d", up=True)
        fleet.stack.stop(name, signal.SIGKILL)


def ran_on(result: dict) -> dict[str, str | None]:
    return {job_id: (record or {}).get("worker") for job_id, record in result["jobs"].items()}


def assert_none_lost(result: dict, accepted: int) -> None:
    jobs = result["jobs"]
    assert not result["refused"], result["refused"][:3]
    assert len(jobs) == accepted
    statuses = {job_id: (record or {}).get("status") for job_id, record in jobs.items()}
    lost = {job_id: status for job_id, status in statuses.items() if status != "succeeded"}
    assert not lost, f"{len(lost)} of {len(jobs)} jobs did not succeed: {list(lost.items())[:5]}"


def test_jobs_spread_over_workers_on_two_hosts_and_each_shows_its_host(fleet, worker_d):
    workers = fleet.wait_workers("C", "D")
    addresses = {w["hostname"].split("@")[0]: w["address"] for w in workers}
    assert addresses == {"C": fleet.hosts.address("c"), "D": fleet.hosts.address("d")}
    assert all(w["host"] for w in workers)
    proc, out = fleet.start_load(120, "spread")
    result = fleet.finish(proc, out)
    assert_none_lost(result, 120)
    counts: dict[str, int] = {}
    for worker in ran_on(result).values():
        node = (worker or "?").split("@")[0]
        counts[node] = counts.get(node, 0) + 1
    assert set(counts) == {"C", "D"}, counts
    print(f"spread: {counts}")


@pytest.mark.parametrize("fault", ["link_cut", "sigkill"])
def test_losing_host_d_mid_load_loses_no_job(fleet, worker_d, fault):
    fleet.wait_workers("C", "D")
    recovered_before = fleet.recovered("C")
    proc, out = fleet.start_load(300, f"lose-d-{fault}", batch_rows=BATCH_ROWS)
    fleet.wait_accepted(out, 1)  # the batch went in first
    if fault == "link_cut":
        assert fleet.holds_claim(worker_d, freeze=True)  # D stopped holding work
        lost_at = time.time()
        fleet.hosts.link("d", up=False)
        os.killpg(fleet.stack.procs[worker_d].pid, signal.SIGCONT)  # D's worker lives on, unreachable: a partition
    else:
        assert fleet.holds_claim(worker_d, freeze=True)  # D stopped holding work
        lost_at = time.time()
        fleet.stack.stop(worker_d, signal.SIGKILL)  # killed holding work
    result = fleet.finish(proc, out)
    assert_none_lost(result, 300)
    batch = result["batch"]
    assert batch["status"] == "succeeded"
    assert batch["progress"] == {"total": BATCH_ROWS, "done": BATCH_ROWS, "failed": 0}  # each row once
    workers = ran_on(result)
    on_d = [job_id for job_id, w in workers.items() if (w or "").startswith("D@")]
    late = [job_id for at, job_id in fleet.accepted(out) if at > lost_at + BOUND_S]
    assert late and all(workers[j].startswith("C@") for j in late)  # after the bound, C alone serves
    recovered = fleet.recovered("C") - recovered_before
    assert recovered, "no work of D's was sent again: the fault caught nothing in flight"
    print(f"lose D ({fault}): 300 accepted, 0 lost, {len(on_d)} singles ran on D, C re-sent {recovered}")


def test_a_third_worker_joining_mid_load_takes_work_within_one_heartbeat(fleet, worker_d):
    fleet.wait_workers("C", "D")
    proc, out = fleet.start_load(300, "join", pause_s=0.03)
    fleet.wait_accepted(out, 50)
    name = fleet.worker("f")
    try:
        joined = next(w for w in fleet.wait_workers("F") if w["hostname"].startswith("F@"))
        result = fleet.finish(proc, out)
    finally:
        fleet.stack.stop(name, signal.SIGKILL)
    assert_none_lost(result, 300)
    on_f = sorted(
        datetime.fromisoformat(record["started_at"]).timestamp()
        for record in result["jobs"].values()
        if record["worker"].startswith("F@")
    )
    assert on_f, "the joining worker took no work"
    took_after_s = on_f[0] - joined["started_at"]
    assert joined["address"] == fleet.hosts.address("f")
    assert took_after_s <= HEARTBEAT_S, f"F's first job started {took_after_s:.2f} s after it joined"
    print(f"join: F ran {len(on_f)} of 300 jobs, its first {took_after_s:.3f} s after it joined")
