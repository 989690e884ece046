"""What every training script does at the end: write the artifact, its sha256 and the manifest."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.manifests import MANIFEST, ModelManifest, sha256_of
from shared.settings import get_settings

MODELS_DIR_HELP = "default: MLQUEUE_MODELS_DIR (a temporary folder with --publish)"


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
    """The command line every tabular training script shares: ``--models-dir``, ``--version``,
    ``--publish URL``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, help=MODELS_DIR_HELP)
    parser.add_argument("--version", type=int, default=1)
    add_publish_argument(parser)
    args = parser.parse_args()
    with output_dir(args) as models_dir:
        manifest = train(models_dir, args.version)
        publish_if_asked(args, models_dir, manifest)
    print(f"{name} v{manifest.version}: {manifest.metrics}")  # noqa: T201 - CLI output


def add_publish_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--publish",
        metavar="URL",
        help="upload the trained version to this model repository (s3://bucket/prefix or a folder); "
        "the endpoint comes from MLQUEUE_S3_ENDPOINT_URL, credentials from AWS_*",
    )


@contextmanager
def output_dir(args: argparse.Namespace) -> Iterator[Path]:
    """Where to train: ``--models-dir``; else a temporary folder when publishing (the local
    repository is left alone), else ``MLQUEUE_MODELS_DIR``."""
    if args.models_dir is not None:
        yield args.models_dir
    elif args.publish:
        with tempfile.TemporaryDirectory(prefix="mlqueue-train-") as tmp:
            yield Path(tmp)
    else:
        yield default_models_dir()


def publish_if_asked(args: argparse.Namespace, models_dir: Path, manifest: ModelManifest) -> None:
    if args.publish:
        from training.publish import publish_from_cli as publish

        publish(models_dir / manifest.name / str(manifest.version), args.publish, get_settings().s3_endpoint_url)
        print(f"published {manifest.name} v{manifest.version} to {args.publish}")  # noqa: T201 - CLI output
