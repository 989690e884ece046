"""The models a worker process holds: verified, loaded once, warmed up, each behind a batcher."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ErrorCode, InvalidInput, MlqueueError, NotFound
from shared.fastjson import JsonValue
from shared.heap import freeze_loaded_heap
from shared.manifests import ModelManifest, ModelRepository
from worker import metrics as worker_metrics
from worker.artifacts import ArtifactError, fetch_artifact
from worker.families import Predictor, Prepared, load_predictor
from worker.micro_batching import Batcher, Pass, Result

log = logging.getLogger(__name__)
__all__ = ["ArtifactError", "LoadedModel", "ModelRuntime", "ModelUnavailable"]


class ModelUnavailable(MlqueueError):
    code = ErrorCode.MODEL_UNAVAILABLE


@dataclass
class LoadedModel:
    manifest: ModelManifest
    predictor: Predictor
    batcher: Batcher
    load_ms: float

    def predict_many(self, raw_inputs: list[JsonValue | bytes | None]) -> Pass:
        """One forward pass (with whatever else the batcher holds) for many inputs: each one's
        output, or the exception that is its error (an ``MlqueueError`` when the input was missing
        or could not be read, any other exception from the pass itself); and the pass's ms."""
        results: list[Result] = [{} for _ in raw_inputs]  # every slot is filled below
        prepared: list[Prepared] = []
        positions: list[int] = []
        for i, raw in enumerate(raw_inputs):
            try:
                if raw is None:
                    raise MlqueueError("the input has expired or is missing", code=ErrorCode.INPUT_MISSING)
                prepared.append(self.predictor.prepare(raw))
                positions.append(i)
            except MlqueueError as exc:
                results[i] = exc
            except Exception as exc:  # whatever one input holds, it fails that input alone
                log.warning("model.input_unreadable model=%s index=%s", self.manifest.name, i, exc_info=True)
                results[i] = InvalidInput(f"the input could not be read: {type(exc).__name__}")
        outputs, predict_ms = self.batcher.run_many(prepared) if prepared else ([], 0.0)
        for i, output in zip(positions, outputs, strict=True):
            results[i] = output
        worker_metrics.record_predictions(self.manifest, results)
        return results, predict_ms


@dataclass
class ModelRuntime:
    """Every version in the repository, loaded once; ``load_all`` again picks up new ones.

    Jobs in flight keep the model object they started with, so a reload never fails them.
    """

    repository: ModelRepository
    on_change: Callable[[], None] = lambda: None  # e.g. publish presence now
    loaded: dict[tuple[str, int], LoadedModel] = field(default_factory=dict)
    failures: dict[tuple[str, int], str] = field(default_factory=dict)
    loading: set[tuple[str, int]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load_all(self) -> None:
        """Load every version not loaded yet (failed ones are retried); failures are recorded, never fatal."""
        with self._lock:
            self.repository.refresh()
            todo = [
                m
                for versions in self.repository.models().values()
                for m in versions.values()
                if (m.name, m.version) not in self.loaded
            ]
            self.loading.update((m.name, m.version) for m in todo)
            for m in todo:
                self.failures.pop((m.name, m.version), None)
            if todo:
                self.on_change()
            for manifest in todo:
                self._load(manifest)
                self.loading.discard((manifest.name, manifest.version))
            if todo:
                freeze_loaded_heap()
                self.on_change()

    def _load(self, manifest: ModelManifest) -> None:
        key = (manifest.name, manifest.version)
        started = time.perf_counter()
        try:
            artifact = fetch_artifact(self.repository, manifest)  # verified sha256: loading an artifact runs its code
            predictor = load_predictor(manifest, artifact)
            predictor.warm_up()
        except Exception as exc:  # noqa: BLE001 - one bad model must not stop the others
            self.failures[key] = str(exc)
            log.error("model.load_failed model=%s version=%s error=%s", *key, exc)
            return
        load_ms = (time.perf_counter() - started) * 1000
        worker_metrics.observe_model_load(manifest, load_ms / 1000)
        batching = manifest.batching
        self.loaded[key] = LoadedModel(
            manifest, predictor, Batcher(predictor, batching.max_batch_size, batching.max_delay_ms), load_ms
        )
        self.failures.pop(key, None)
        log.info("model.loaded model=%s version=%s load_ms=%.0f", *key, load_ms)

    def get(self, name: str, version: int) -> LoadedModel:
        model = self.loaded.get((name, version))
        if model is None and (name, version) not in self.failures:
            model = self._load_on_demand(name, version)
        if model is None:
            why = self.failures.get((name, version), "not present on this worker")
            raise ModelUnavailable(f"model {name} v{version} is not loaded: {why}")
        return model

    def _load_on_demand(self, name: str, version: int) -> LoadedModel | None:
        """Another worker loaded a new version first and the API routed a job for it here."""
        with self._lock:
            if (name, version) not in self.loaded:
                self.repository.refresh()
                try:
                    self._load(self.repository.get(name, version))
                except NotFound:
                    return None
                self.on_change()
        return self.loaded.get((name, version))

    def predict(self, name: str, version: int, raw_input: Any) -> tuple[dict[str, Any], float]:
        model = self.get(name, version)
        prepared = model.predictor.prepare(raw_input)
        return model.batcher.run(prepared)

    def predict_many(self, name: str, version: int, raw_inputs: list[JsonValue | bytes | None]) -> Pass:
        """``LoadedModel.predict_many`` of this model version; raises ``MlqueueError`` when it is
        not available here."""
        return self.get(name, version).predict_many(raw_inputs)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per model, the versions loaded here and those that failed (published in the heartbeat)."""
        out: dict[str, dict[str, Any]] = {}
        for (name, version), model in list(self.loaded.items()):
            out.setdefault(name, {})[str(version)] = {"status": "loaded", "load_ms": round(model.load_ms, 1)}
        for (name, version), error in list(self.failures.items()):
            out.setdefault(name, {})[str(version)] = {"status": "failed", "error": error}
        for name, version in list(self.loading):
            out.setdefault(name, {})[str(version)] = {"status": "loading"}
        return out
