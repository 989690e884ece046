"""Image decoding under one pixel budget shared by every request of the process.

Decoding is bounded per image (``MLQUEUE_MAX_IMAGE_PIXELS``), but not across requests: eight
concurrent 36-Mpx PNGs of 105 KB each took the API from 67 MB to 1.95 GB. Each decode first
reserves its image's pixel count from ``MLQUEUE_DECODE_PIXEL_BUDGET`` (first come, first served;
an image over the whole budget waits until it can run alone), then decodes in a thread, then hands
freed memory back to the OS (``shared.heap.release_freed_memory``).
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from shared.heap import release_freed_memory
from shared.images import image_pixels, preprocess_image

# Below this, a decode's buffers are small enough for malloc to reuse: not worth a trim.
TRIM_ABOVE_PIXELS = 1_000_000


class PixelBudget:
    """A weighted semaphore on the event loop, fair (FIFO) so a large image is not starved by small ones."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def reserve(self, pixels: int) -> AsyncIterator[None]:
        need = min(pixels, self.capacity)
        await self._acquire(need)
        try:
            yield
        finally:
            self._release(need)

    async def _acquire(self, need: int) -> None:
        if not self._waiters and self.used + need <= self.capacity:
            self.used += need
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((need, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(need)  # granted just as the request went away
            else:
                self._waiters.remove((need, granted))
                self._wake()  # it may have been the head of the queue, holding others back
            raise

    def _release(self, need: int) -> None:
        self.used -= need
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.capacity:
            need, granted = self._waiters.popleft()
            if not granted.done():
                self.used += need
                granted.set_result(None)


async def decode_within_budget(budget: PixelBudget, data: bytes, *, width: int, height: int, max_pixels: int) -> bytes:
    """``preprocess_image`` once the image's pixels fit in the budget (refusals come first, unqueued)."""
    pixels = image_pixels(data, max_pixels=max_pixels)  # header only: microseconds, on the loop
    async with budget.reserve(pixels):
        return await anyio.to_thread.run_sync(functools.partial(_decode, data, width, height, max_pixels, pixels))


def _decode(data: bytes, width: int, height: int, max_pixels: int, pixels: int) -> bytes:
    try:
        return preprocess_image(data, width=width, height=height, max_pixels=max_pixels)
    finally:
        if pixels > TRIM_ABOVE_PIXELS:
            release_freed_memory()
