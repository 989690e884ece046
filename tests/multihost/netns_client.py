"""The client host's program (run on host E under ``ip netns exec``): the test process itself
lives outside the namespaces and cannot reach the API, so this one talks to it and reports.

    python -m tests.multihost.netns_client ready URL --need C=T1,D=T2
                                          until /readyz shows those workers, each ready since its T
    python -m tests.multihost.netns_client load URL --count N --out F  N distinct jobs, then their fate
    python -m tests.multihost.netns_client holding REDIS_URL --worker D
                                          until worker D holds a claim on the cpu line (work in flight);
                                          --freeze PGID: and SIGSTOP it while it holds one

``load`` writes one line per accepted job id to ``F.accepted`` as it goes (the test times its
faults on it), then waits until every job is terminal and writes ``F`` (JSON): the records, and
any refusal.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import httpx
import redis

from shared.redis_keys import queue_keys
from tests.multihost.load import iris_row, wait_finished


def ready(url: str, need: dict[str, float], timeout_s: float) -> int:
    """A restarted worker's name is there before it is back (its old presence lives 3 beats):
    the time each was started tells them apart."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{url}/readyz", timeout=2)
            workers = last.json().get("workers", []) if last.status_code == 200 else []
            fresh = {
                w["hostname"].split("@")[0]
                for w in workers
                if w.get("started_at", 0) >= need.get(w["hostname"].split("@")[0], 0)
            }
            if last.status_code == 200 and set(need) <= fresh:
                sys.stdout.write(last.text + "\n")
                return 0
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    sys.stderr.write(f"not ready: {last!r} {getattr(last, 'text', '')}\n")
    return 1


def load(url: str, count: int, pause_s: float, out: Path, timeout_s: float, batch_rows: int = 0) -> int:
    """``batch_rows``: first a batch of that many rows, whose chunks keep every worker busy."""
    rng = random.Random(count)
    ids: list[str] = []
    refused: list[list] = []
    batch_id = None
    with httpx.Client(base_url=url, timeout=30) as client, open(f"{out}.accepted", "w") as progress:
        if batch_rows:
            batch = client.post("/v1/models/iris/batches", json={"inputs": [iris_row(rng) for _ in range(batch_rows)]})
            batch_id = batch.json()["id"] if batch.status_code == 202 else None
            if batch_id is None:
                refused.append([batch.status_code, batch.text[:200]])
        for _ in range(count):
            response = client.post("/v1/models/iris/jobs", json={"input": iris_row(rng)})
            if response.status_code == 202:
                ids.append(response.json()["id"])
                progress.write(f"{time.time()} {ids[-1]}\n")
                progress.flush()
            else:
                refused.append([response.status_code, response.text[:200]])
            time.sleep(pause_s)
        final = wait_finished(client, [*ids, *([batch_id] if batch_id else [])], timeout_s)
        workers = client.get("/readyz").json().get("workers", [])
    batch_record = final.pop(batch_id, None) if batch_id else None
    out.write_text(json.dumps({"jobs": final, "batch": batch_record, "refused": refused, "workers": workers}))
    return 0


def holding(redis_url: str, worker: str, timeout_s: float, freeze: int | None = None) -> int:
    """Until a claim on the cpu line names ``worker`` (claims are ``"{hostname}#{incarnation}|{at}"``).
    ``freeze``: then SIGSTOP that process group, and keep it stopped only if the claim is still there
    (an iris chunk takes milliseconds: a claim seen a moment before a fault may be gone by then, but
    a stopped process keeps what it holds). Namespaces share one PID space, so this host can."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)

    def held() -> bool:
        return any(claim.startswith(f"{worker}@") for claim in r.hvals(queue_keys("cpu").claimed))

    deadline = time.monotonic() + timeout_s
    while True:
        if held():
            if freeze is None:
                return 0
            os.killpg(freeze, signal.SIGSTOP)
            if held():
                return 0
            os.killpg(freeze, signal.SIGCONT)
        if time.monotonic() >= deadline:  # checked once at least, also with no timeout
            sys.stderr.write(f"{worker} held no claim within {timeout_s}s\n")
            return 1
        time.sleep(0.002)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.multihost.netns_client")
    parser.add_argument("command", choices=["ready", "load", "holding"])
    parser.add_argument("url")
    parser.add_argument("--need", default="", help="NAME=SINCE,...: workers that must be ready, each since then")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.02)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--batch-rows", type=int, default=0)
    parser.add_argument("--worker", help="holding: the worker's Celery node name before the @")
    parser.add_argument("--freeze", type=int, help="holding: SIGSTOP this process group while it holds one")
    args = parser.parse_args(argv)
    if args.command == "ready":
        need = {name: float(since) for name, _, since in (p.partition("=") for p in args.need.split(",") if p)}
        return ready(args.url, need, args.timeout)
    if args.command == "holding":
        return holding(args.url, args.worker, args.timeout, args.freeze)
    return load(args.url, args.count, args.pause, args.out, args.timeout, args.batch_rows)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
