"""Micro-batching of forward passes: jobs for the same model that arrive together run as one pass.

(Not batch jobs: a batch job is split into chunks, run by ``worker.chunks`` and stored by
``shared.batch_store``; each chunk is one unit here.)

Each task thread hands its prepared inputs (one for a single job, many for a batch chunk) to the
model's batcher and blocks on a future. One thread per model takes whatever is waiting, up to
``max_batch_size`` inputs, runs it, and fans the results back. A lone job runs at once; under
load, jobs that arrive during a forward pass form the next batch, so batches grow with load
without a fixed delay. ``max_delay_ms`` adds a short wait for stragglers only when a batch is
not full and more jobs are already in flight. Units are never split, so a batch chunk larger
than ``max_batch_size`` runs as one pass of its own.

When the model is idle (nothing queued, nothing running), the submitting thread runs the pass
itself: a lone job skips two thread hand-offs. A lock keeps passes on one model one at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from worker import metrics as worker_metrics
from worker.families import Predictor, Prepared

log = logging.getLogger(__name__)

Result = dict[str, Any] | BaseException  # an item's output, or the exception that is its error
Pass = tuple[list[Result], float]  # each item's result, and the milliseconds of the forward pass
Unit = tuple[list[Prepared], Future[Pass]]  # inputs queued for the next pass, and where its result goes
T = TypeVar("T")


class Batcher:
    def __init__(self, predictor: Predictor, max_batch_size: int, max_delay_ms: float) -> None:
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_ms / 1000
        self._queue: queue.SimpleQueue[Unit] = queue.SimpleQueue()
        self._in_flight = 0  # units submitted and not yet answered
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()  # one forward pass at a time per model
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{predictor.manifest.name}", daemon=True)
        self._thread.start()

    def run(self, prepared: Prepared) -> tuple[dict[str, Any], float]:
        """Predict one prepared input; returns (output, milliseconds of the forward pass)."""
        (result,), elapsed_ms = self.run_many([prepared])
        if isinstance(result, BaseException):
            raise result
        return result, elapsed_ms

    def run_many(self, prepared: list[Prepared]) -> Pass:
        """Predict many; each result is an output or the exception that item raised."""
        with self._lock:
            inline = self._in_flight == 0 and self._model_lock.acquire(blocking=False)
            if not inline:
                self._in_flight += 1
        if inline:
            try:
                return self._forward(prepared)
            finally:
                self._model_lock.release()
        future: Future[Pass] = Future()
        self._queue.put((prepared, future))
        return future.result()

    def run_whole(self, count: int, forward: Callable[[], T]) -> tuple[T, float]:
        """A pass that is a batch already (a batch chunk on a family's fast path, which formats its
        own outputs): run alone on the model, measured like every pass. Exceptions propagate."""
        with self._lock:
            self._in_flight += 1  # lone jobs meanwhile queue for the next pass instead of running inline
        try:
            with self._model_lock:
                return self._measured(count, forward)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _collect(self) -> list[Unit]:
        units = [self._queue.get()]
        size = len(units[0][0])
        deadline = time.monotonic() + self.max_delay_s
        while size < self.max_batch_size:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                with self._lock:
                    stragglers = self._in_flight > len(units)
                remaining = deadline - time.monotonic()
                if not stragglers or remaining <= 0:
                    break
                try:
                    unit = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            units.append(unit)
            size += len(unit[0])
        return units

    def _loop(self) -> None:
        while True:
            units = self._collect()
            with self._model_lock:
                outputs, elapsed_ms = self._forward([item for items, _ in units for item in items])
            with self._lock:
                self._in_flight -= len(units)
            offset = 0
            for items, future in units:
                future.set_result((outputs[offset : offset + len(items)], elapsed_ms))
                offset += len(items)

    def _forward(self, inputs: list[Prepared]) -> Pass:
        return self._measured(len(inputs), lambda: self._predict_isolated(inputs))

    def _measured(self, count: int, forward: Callable[[], T]) -> tuple[T, float]:
        started = time.perf_counter()
        outputs = forward()
        elapsed_ms = (time.perf_counter() - started) * 1000
        worker_metrics.observe_forward_pass(self.predictor.manifest, count, elapsed_ms / 1000)
        return outputs, elapsed_ms

    def _predict_isolated(self, inputs: list[Prepared]) -> list[Result]:
        try:
            return list(self.predictor.predict_batch(inputs))
        except Exception:  # noqa: BLE001 - isolate the item that broke the batch
            return [self._predict_one(item) for item in inputs]

    def _predict_one(self, item: Prepared) -> Result:
        try:
            return self.predictor.predict_batch([item])[0]
        except Exception as exc:  # becomes this item's error
            log.exception("model.predict_failed model=%s", self.predictor.manifest.name)
            return exc
