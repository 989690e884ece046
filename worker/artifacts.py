"""A model version's artifact as a local file whose sha256 is the manifest's (an artifact is
code, joblib is pickle, so only the bytes the manifest names are ever loaded).

A folder repository's artifact is loaded in place. An object store's is downloaded once per worker
machine into ``MLQUEUE_MODEL_CACHE_DIR``: streamed to a temporary name, hashed on the way, renamed
into place only when the digest matches. A partial download is never loaded, and a tampered
object is refused (``ArtifactError``, shown in the worker's presence and logs).
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import time
from pathlib import Path

from shared.errors import ErrorCode, MlqueueError
from shared.manifests import MODEL_NAME_RE, ModelManifest, ModelRepository, sha256_of
from shared.model_store import download_verified

log = logging.getLogger(__name__)


class ArtifactError(MlqueueError):
    code = ErrorCode.ARTIFACT_INVALID


def fetch_artifact(repository: ModelRepository, manifest: ModelManifest) -> Path:
    """The verified local file of ``manifest``'s artifact (downloading it first if need be)."""
    _check_names(manifest)
    relative = f"{manifest.name}/{manifest.version}/{manifest.artifact}"
    store = repository.store
    if store.local:
        artifact = store.local_path(relative)
        if not artifact.is_file():
            raise ArtifactError(f"{manifest.name} v{manifest.version}: artifact {artifact} is missing")
        _check(manifest, sha256_of(artifact), f"file {artifact}")
        return artifact
    cached = cache_path(repository, manifest)
    if cached.is_file() and sha256_of(cached) == manifest.sha256:
        return cached  # downloaded before (verified again: the cache is a disk like any other)
    started = time.perf_counter()
    try:
        actual = download_verified(store, relative, cached, manifest.sha256)
    except FileNotFoundError:
        raise ArtifactError(
            f"{manifest.name} v{manifest.version}: artifact {store.url}/{relative} is missing"
        ) from None
    _check(manifest, actual, f"object {store.url}/{relative}")
    log.info(
        "model.downloaded model=%s version=%s bytes=%s ms=%.0f",
        manifest.name,
        manifest.version,
        cached.stat().st_size,
        (time.perf_counter() - started) * 1000,
    )
    return cached


def cache_path(repository: ModelRepository, manifest: ModelManifest) -> Path:
    """``<cache>/<repository>/<name>/<version>/<sha256>/<artifact>``: the artifact keeps its file
    name (Keras reads the format from the extension); the digest in the path means a republished
    object never collides with an old download."""
    root = repository.cache_dir or Path(tempfile.gettempdir()) / "mlqueue-model-cache"
    where = hashlib.sha256(repository.url.encode()).hexdigest()[:16]
    return root / where / manifest.name / str(manifest.version) / manifest.sha256[:32] / manifest.artifact


def _check_names(manifest: ModelManifest) -> None:
    """The manifest comes from the store: its names become local paths, so none may climb out."""
    plain = MODEL_NAME_RE.fullmatch(manifest.name) and MODEL_NAME_RE.fullmatch(manifest.artifact)
    if not plain or ".." in manifest.artifact or not _SHA256_RE.fullmatch(manifest.sha256):
        raise ArtifactError(
            f"{manifest.name[:100]!r} v{manifest.version}: the manifest's name, artifact or sha256 is malformed"
        )


_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def _check(manifest: ModelManifest, actual: str, what: str) -> None:
    if actual != manifest.sha256:
        raise ArtifactError(
            f"{manifest.name} v{manifest.version}: sha256 mismatch "
            f"(manifest {manifest.sha256[:12]}…, {what} {actual[:12]}…); refusing to load"
        )
