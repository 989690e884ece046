"""Coalescing: calls that arrive while one is in flight are gathered and made together.

The API's per-request cost is dominated by Redis round trips, not by what they carry. Under load,
many requests reach the same kind of call (a rate-limit check, a job's write) while one such call
is waiting on Redis; a ``Coalescer`` lets them wait for the next call instead and makes it for all
of them at once: one round trip for many requests. Nothing waits when the API is idle: a call that
finds nothing in flight is made at once, by the request itself, alone.

Each caller gets its own result; an exception of a combined call is raised in every caller of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], max_size: int) -> None:
        """``run`` makes the combined call for a list of items and returns one result per item."""
        self.run = run
        self.max_size = max_size
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = False

    async def call(self, item: T) -> R:
        if self._busy:
            done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            self._waiting.append((item, done))
            # shielded: a client that goes away must not cancel the call made for its whole group
            return await asyncio.shield(done)
        self._busy = True
        try:
            (result,) = await self.run([item])
            return result
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """After a call: the ones that gathered meanwhile go next, in a task of their own."""
        if self._waiting:
            asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[: self.max_size], self._waiting[self.max_size :]
                try:
                    results = await self.run([item for item, _ in group])
                except Exception as exc:  # noqa: BLE001 - raised in every caller of this group
                    for _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for (_, done), result in zip(group, results, strict=True):
                        if not done.done():
                            done.set_result(result)
        finally:
            self._busy = False
            for _, done in self._waiting:  # only after a bug above: never leave a caller hanging
                if not done.done():
                    done.set_exception(RuntimeError("coalesced call stopped"))
            self._waiting.clear()
