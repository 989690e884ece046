"""Reading a Prometheus exposition in tests: every sample by name and labels."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


class Samples(dict):
    """``{(sample name, frozenset(labels.items())): value}`` with lookups by name and some labels."""

    def get_value(self, name: str, **labels: str) -> float | None:
        want = set(labels.items())
        found = [v for (n, ls), v in self.items() if n == name and want <= ls]
        return sum(found) if found else None

    def labelsets(self, name: str) -> list[dict[str, str]]:
        return [dict(ls) for n, ls in self if n == name]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = Samples()
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def eventually(check: Callable[[], T], timeout_s: float = 10) -> T:
    """``check()`` until it stops raising AssertionError (metrics are updated just after the job's
    own write, so a client can see the job finished a moment before the counter moves)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
