"""Model manifests (``<repository>/<name>/<version>/manifest.json``) and input validation against them.

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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from shared.errors import Conflict, ErrorCode, InvalidInput, NotFound
from shared.fastjson import NON_FINITE
from shared.model_store import ModelStore, StoreError
from shared.queues import Queue
from shared.routing import ALIAS_MAX, ROUTING_FILE, Routing

if TYPE_CHECKING:
    from shared.settings import Settings

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
        properties: dict[str, dict[str, Any]] = {
            n: dict(number, description=f.description) for n, f in zip(names, self.input.features, strict=True)
        }
        for key in self.input.echo:
            properties[key] = {"type": ["string", "integer"]}
        named = {"type": "object", "additionalProperties": False, "required": names, "properties": properties}
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
    """Every manifest and every model's aliases in the model repository: a folder or an object
    store (``shared.model_store``). The listing is cached for ``max_age_s``; ``refresh`` (reload)
    makes the next read list again. A file is read again only when its ETag / mtime changed."""

    def __init__(
        self,
        location: Path | str | ModelStore,
        max_age_s: float = 1.0,
        *,
        endpoint_url: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.store = location if isinstance(location, ModelStore) else ModelStore(location, endpoint_url)
        self.max_age_s = max_age_s
        # where a worker keeps the artifacts it downloaded from an object store
        self.cache_dir = cache_dir
        self._lock = threading.RLock()
        self._scanned_at = -math.inf
        self._files: dict[str, tuple[str, ModelManifest | Routing | str]] = {}  # path → (signature, parsed or error)
        self._models: dict[str, dict[int, ModelManifest]] = {}
        self._routing: dict[str, Routing] = {}
        self.errors: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRepository:
        return cls(
            settings.models_location,
            settings.models_refresh_interval_s,
            endpoint_url=settings.s3_endpoint_url,
            cache_dir=settings.model_cache_dir,
        )

    @property
    def url(self) -> str:
        return self.store.url

    @property
    def stale(self) -> bool:
        """The next read lists the store again (an async caller does that read in a thread)."""
        return time.monotonic() - self._scanned_at > self.max_age_s

    def models(self) -> dict[str, dict[int, ModelManifest]]:
        with self._lock:
            if self.stale:
                self._scan()
            return self._models

    def refresh(self) -> None:
        with self._lock:
            self._scanned_at = -math.inf

    def routing(self, name: str) -> Routing:
        """The model's aliases and traffic split (empty when it has none)."""
        self.models()
        return self._routing.get(name, Routing())

    def get(self, name: str, version: int | str | None = None) -> ModelManifest:
        """A version by number or alias; None: the newest."""
        versions = self.models().get(name) if MODEL_NAME_RE.fullmatch(name) else None
        if not versions:
            raise NotFound(f"no model named {name[:100]!r}", code=ErrorCode.MODEL_NOT_FOUND)
        if version is None:
            return versions[max(versions)]
        if isinstance(version, str):
            version = self.resolve_alias(name, version)
        if version not in versions:
            raise NotFound(
                f"model {name} has no version {version} (has {sorted(versions)})",
                code=ErrorCode.MODEL_VERSION_NOT_FOUND,
            )
        return versions[version]

    def resolve_alias(self, name: str, alias: str) -> int:
        aliases = self.routing(name).aliases
        if alias not in aliases:
            raise NotFound(
                f"model {name} has no alias {alias[:ALIAS_MAX]!r} (has {sorted(aliases)})",
                code=ErrorCode.ALIAS_NOT_FOUND,
            )
        return aliases[alias]

    def update_routing(self, name: str, change: Callable[[Routing], None]) -> Routing:
        """Read ``<name>/aliases.json`` from the store itself (not the cached listing), apply
        ``change``, write it back whole. Last writer wins between API processes; within one
        process the lock orders them."""
        with self._lock:
            self.refresh()  # a version published a moment ago can be aliased at once
            self.get(name)  # 404 for an unknown model
            path = f"{name}/{ROUTING_FILE}"
            try:
                routing = Routing.model_validate_json(self.store.read(path))
            except FileNotFoundError:
                routing = Routing()
            except ValidationError as exc:  # never overwrite aliases nobody can read any more
                raise Conflict(
                    f"{self.url}/{path} is unreadable ({exc.errors()[0]['msg']}): fix or delete it first",
                    code=ErrorCode.ROUTING_UNREADABLE,
                ) from exc
            change(routing)
            routing.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
            self.store.write(path, routing.model_dump_json(indent=2).encode() + b"\n")
            log.info("model.routing_set model=%s aliases=%s weights=%s", name, routing.aliases, routing.weights)
            self.refresh()
            return routing

    def _scan(self) -> None:
        try:
            listing = self.store.listing()
        except StoreError:
            if self._scanned_at == -math.inf and not self._models:
                raise  # never listed: a 503, not "no such model"
            log.warning("repository.list_failed url=%s (serving the last listing)", self.url, exc_info=True)
            self._scanned_at = time.monotonic()
            return
        files: dict[str, tuple[str, ModelManifest | Routing | str]] = {}  # path -> (signature, parsed or why not)
        for path, signature in sorted(listing.items()):
            parse: Callable[[bytes], ModelManifest | Routing] | None = None
            if _MANIFEST_PATH.fullmatch(path):
                parse = _parse_manifest
            elif _ROUTING_PATH.fullmatch(path):
                parse = Routing.model_validate_json
            if parse is None:
                continue
            cached = self._files.get(path)
            if cached and cached[0] == signature:
                files[path] = cached
                continue
            try:
                files[path] = (signature, parse(self.store.read(path)))
            except StoreError:
                # a network blip is not a broken file: keep what was read before, and read it
                # again at the next listing (an empty signature never matches)
                log.warning("manifest.read_failed path=%s/%s", self.url, path, exc_info=True)
                files[path] = ("", cached[1] if cached else f"unreadable at {datetime.now(UTC):%H:%M:%S}")
            except (OSError, ValueError, ValidationError) as exc:
                files[path] = (signature, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                log.warning("manifest.invalid path=%s/%s error=%s", self.url, path, files[path][1])
        models: dict[str, dict[int, ModelManifest]] = {}
        routing: dict[str, Routing] = {}
        errors: dict[str, str] = {}
        for path, (_, parsed) in files.items():
            if isinstance(parsed, ModelManifest):
                models.setdefault(parsed.name, {})[parsed.version] = parsed
            elif isinstance(parsed, Routing):
                routing[path.split("/", 1)[0]] = parsed
            else:
                errors[path] = parsed
        self._files, self._models, self._routing, self.errors = files, models, routing, errors
        self._scanned_at = time.monotonic()


_MANIFEST_PATH = re.compile(rf"[^/]+/[^/]+/{re.escape(MANIFEST)}")
_ROUTING_PATH = re.compile(rf"[^/]+/{re.escape(ROUTING_FILE)}")


def _parse_manifest(data: bytes) -> ModelManifest:
    return ModelManifest.model_validate(json.loads(data))
