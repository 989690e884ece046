"""Publish a trained version to a model repository (a folder or ``s3://bucket/prefix``):
``python -m training.iris --version 3 --publish s3://models/prod`` (any training script), or
``make publish MODEL=iris VERSION=3 URL=s3://models/prod``.

Artifact first, manifest last: a reader lists manifests, so it never sees a version whose
artifact is not all there. Versions are immutable: publishing one that exists is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shared.manifests import MANIFEST, ModelManifest, sha256_of
from shared.model_store import ModelStore, StoreError

log = logging.getLogger(__name__)


class PublishError(Exception):
    pass


def publish(version_dir: Path, url: str, endpoint_url: str | None = None) -> ModelManifest:
    """Upload ``version_dir`` (``manifest.json`` + its artifact) to the repository at ``url``."""
    manifest = ModelManifest.model_validate_json((version_dir / MANIFEST).read_bytes())
    artifact = version_dir / manifest.artifact
    if sha256_of(artifact) != manifest.sha256:
        raise PublishError(f"{artifact}: sha256 differs from its manifest; retrain it")
    store = ModelStore(url, endpoint_url)
    prefix = f"{manifest.name}/{manifest.version}"
    if store.exists(f"{prefix}/{MANIFEST}"):
        raise PublishError(
            f"{manifest.name} v{manifest.version} is already in {url}: versions are immutable, "
            "publish a new one (--version N)"
        )
    store.upload(artifact, f"{prefix}/{manifest.artifact}")
    store.write(f"{prefix}/{MANIFEST}", (version_dir / MANIFEST).read_bytes())
    log.info("model.published model=%s version=%s url=%s", manifest.name, manifest.version, url)
    return manifest


def publish_from_cli(version_dir: Path, url: str, endpoint_url: str | None) -> ModelManifest:
    """``publish`` for the command lines: a refusal is one line on stderr and exit status 1."""
    try:
        return publish(version_dir, url, endpoint_url)
    except (PublishError, StoreError) as exc:
        raise SystemExit(f"publish refused: {exc}") from None
