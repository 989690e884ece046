"""What every training script does at the end: write the artifact, its sha256 and the manifest."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.manifests import MANIFEST, ModelManifest, sha256_of
from shared.settings import get_settings


def default_models_dir() -> Path:
    return get_settings().models_dir


def write_version(
    models_dir: Path, fields: dict[str, Any], artifact_name: str, save: Callable[[Path], None]
) -> ModelManifest:
    """Save the artifact with ``save(path)``, then write a manifest naming its sha256."""
    version_dir = Path(models_dir) / fields["name"] / str(fields["version"])
    version_dir.mkdir(parents=True, exist_ok=True)
    artifact = version_dir / artifact_name
    save(artifact)
    manifest = ModelManifest.model_validate(
        {
            **fields,
            "artifact": artifact_name,
            "sha256": sha256_of(artifact),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    (version_dir / MANIFEST).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return manifest


def cli(doc: str | None, name: str, train: Callable[[Path, int], ModelManifest]) -> None:
    """The command line every tabular training script shares: ``--models-dir``, ``--version``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--version", type=int, default=1)
    args = parser.parse_args()
    manifest = train(args.models_dir, args.version)
    print(f"{name} v{manifest.version}: {manifest.metrics}")  # noqa: T201 - CLI output
