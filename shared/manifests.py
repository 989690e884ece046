"""Model manifests (``models/<name>/<version>/manifest.json``) and input validation against them.

The API validates a request against the manifest before a job exists; the worker validates again
(a batch row, a stale API) with the same function, so both sides say the same thing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from shared.errors import InvalidInput, NotFound
from shared.fastjson import NON_FINITE
from shared.queues import Queue

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# What a model name in a path may look like; anything else is a 404 before it reaches a lookup or a key.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)
DEFAULT_THRESHOLD = 0.85


class FeatureSpec(BaseModel):
    name: str
    description: str = ""


class FeaturesInput(BaseModel):
    type: Literal["features"] = "features"
    features: list[FeatureSpec]
    # Optional keys passed through to the output untouched (e.g. ``observation_id``).
    echo: list[str] = []


class ImageInput(BaseModel):
    type: Literal["image"] = "image"
    height: int
    width: int
    channels: int = 3


class Batching(BaseModel):
    max_batch_size: int = Field(32, ge=1)
    max_delay_ms: float = Field(2.0, ge=0)


class ModelManifest(BaseModel):
    name: str
    version: int
    framework: Literal["sklearn", "keras"]
    task: Literal["classification", "anomaly"]
    queue: Queue = Queue.CPU
    input: Annotated[FeaturesInput | ImageInput, Field(discriminator="type")]
    labels: list[str] = []
    threshold: float | None = None
    # Same input, same output: results may be cached (False for a model with sampling or state).
    deterministic: bool = True
    batching: Batching = Field(default_factory=Batching)
    artifact: str
    sha256: str
    metrics: dict[str, Any] = {}
    trained_at: str = ""
    training_command: str = ""
    card: dict[str, Any] = {}

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.input.features] if isinstance(self.input, FeaturesInput) else []

    def input_json_schema(self) -> dict[str, Any]:
        """The JSON Schema of this model's ``input``, as published by ``GET /v1/models``."""
        if isinstance(self.input, ImageInput):
            return {
                "type": "string",
                "format": "binary",
                "contentMediaType": "image/*",
                "description": f"an image, resized to {self.input.width}x{self.input.height}",
            }
        names = self.feature_names
        number = {"type": "number"}
        named = {
            "type": "object",
            "additionalProperties": False,
            "required": names,
            "properties": {
                n: dict(number, description=f.description) for n, f in zip(names, self.input.features, strict=True)
            },
        }
        for key in self.input.echo:
            named["properties"][key] = {"type": ["string", "integer"]}
        positional = {"type": "array", "items": number, "minItems": len(names), "maxItems": len(names)}
        return {"oneOf": [named, positional]}


def validate_features(manifest: ModelManifest, value: Any) -> tuple[list[float], dict[str, Any]]:
    """A named object or positional array → (feature vector in manifest order, echoed keys)."""
    if not isinstance(manifest.input, FeaturesInput):
        raise InvalidInput(f"model {manifest.name} takes an image upload, not JSON input")
    names = manifest.feature_names
    echo: dict[str, Any] = {}
    if isinstance(value, dict):
        echo = {k: value[k] for k in manifest.input.echo if k in value}
        for k, v in echo.items():
            # (an int's size is read from its bits: ``str`` of a huge int raises past 4,300 digits)
            size = len(v) if isinstance(v, str) else v.bit_length() * 30103 // 100000 if isinstance(v, int) else 0
            if not isinstance(v, str | int) or isinstance(v, bool) or size > 200:
                raise InvalidInput(f"{k} must be a string or integer of at most 200 characters")
        given = {k: v for k, v in value.items() if k not in echo}
        missing = [n for n in names if n not in given]
        unknown = sorted(set(given) - set(names))
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown {', '.join(k[:50] for k in unknown[:10])}")
            raise InvalidInput(f"input for {manifest.name}: {'; '.join(parts)} (expects {', '.join(names)})")
        items = [(n, given[n]) for n in names]
    elif isinstance(value, list):
        if len(value) != len(names):
            raise InvalidInput(
                f"input for {manifest.name} must have {len(names)} values ({', '.join(names)}), got {len(value)}"
            )
        items = list(zip(names, value, strict=True))
    else:
        raise InvalidInput(
            f"input for {manifest.name} must be an object of {', '.join(names)} or an array of {len(names)} numbers"
        )
    vector = []
    for name, v in items:
        if isinstance(v, str) and v in NON_FINITE:  # NaN / Infinity literals, read as text by shared.fastjson
            raise InvalidInput(f"{name} must be a finite number, got {v}")
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidInput(f"{name} must be a number, got {type(v).__name__}")
        try:  # an int beyond a float's range (400 digits) raises here, not as infinity
            number = float(v)
        except OverflowError:
            raise InvalidInput(f"{name} must be a finite number, got an integer beyond its range") from None
        if not math.isfinite(number):
            raise InvalidInput(f"{name} must be a finite number, got {v}")
        vector.append(number)
    return vector, echo


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRepository:
    """Reads every manifest under ``models_dir``; rescans at most once a second."""

    def __init__(self, models_dir: Path, max_age_s: float = 1.0) -> None:
        self.models_dir = Path(models_dir)
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._scanned_at = -math.inf
        self._models: dict[str, dict[int, ModelManifest]] = {}
        self.errors: dict[str, str] = {}

    def models(self) -> dict[str, dict[int, ModelManifest]]:
        with self._lock:
            if time.monotonic() - self._scanned_at > self.max_age_s:
                self._models, self.errors = scan_models(self.models_dir)
                self._scanned_at = time.monotonic()
            return self._models

    def refresh(self) -> None:
        with self._lock:
            self._scanned_at = -math.inf

    def get(self, name: str, version: int | None = None) -> ModelManifest:
        versions = self.models().get(name) if MODEL_NAME_RE.fullmatch(name) else None
        if not versions:
            raise NotFound(f"no model named {name[:100]!r}", code="model_not_found")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise NotFound(
                f"model {name} has no version {version} (has {sorted(versions)})", code="model_version_not_found"
            )
        return versions[version]


def scan_models(models_dir: Path) -> tuple[dict[str, dict[int, ModelManifest]], dict[str, str]]:
    models: dict[str, dict[int, ModelManifest]] = {}
    errors: dict[str, str] = {}
    for path in sorted(Path(models_dir).glob(f"*/*/{MANIFEST}")):
        try:
            manifest = ModelManifest.model_validate(json.loads(path.read_text()))
        except (OSError, ValueError, ValidationError) as exc:
            errors[str(path)] = str(exc).splitlines()[0]
            log.warning("manifest.invalid path=%s error=%s", path, errors[str(path)])
            continue
        models.setdefault(manifest.name, {})[manifest.version] = manifest
    return models, errors
