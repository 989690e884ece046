"""``python -m training [--force] [names]``: train every shipped model whose artifact is missing.

``python -m training iris --version 3 --publish s3://bucket/prefix`` (``make publish``) uploads
the version to a model repository: the local copy when it is present, else a fresh training run
in a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import tempfile
from pathlib import Path

from shared.settings import get_settings
from training.common import add_publish_argument, default_models_dir
from training.image import DIGITS_VERSION

# model name → (module with ``train(models_dir, version)``, version shipped)
SHIPPED = {
    "iris": ("training.iris", 1),
    "wine": ("training.wine", 1),
    "anomaly": ("training.anomaly", 1),
    "digits": ("training.image", DIGITS_VERSION),
}


def is_present(version_dir: Path) -> bool:
    return (version_dir / "manifest.json").is_file() and any(p.name != "manifest.json" for p in version_dir.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--force", action="store_true", help="retrain even when the artifact exists")
    parser.add_argument("--version", type=int, help="the version to train or publish (default: the shipped one)")
    add_publish_argument(parser)
    parser.add_argument("names", nargs="*", default=list(SHIPPED), help="models to train (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(message)s")
    unknown = sorted(set(args.names) - set(SHIPPED))
    if unknown:
        parser.error(f"unknown models {', '.join(unknown)} (known: {', '.join(SHIPPED)})")
    for name in args.names:
        module, shipped = SHIPPED[name]
        version = args.version or shipped
        if args.publish:
            publish_one(name, module, version, args)
            continue
        if not args.force and is_present(args.models_dir / name / str(version)):
            logging.info("%s v%s: present", name, version)
            continue
        logging.info("%s v%s: training…", name, version)
        manifest = importlib.import_module(module).train(args.models_dir, version)
        logging.info("%s v%s: trained %s", name, version, manifest.metrics)


def publish_one(name: str, module: str, version: int, args: argparse.Namespace) -> None:
    from training.publish import publish_from_cli as publish

    endpoint = get_settings().s3_endpoint_url
    local = args.models_dir / name / str(version)
    if is_present(local) and not args.force:
        publish(local, args.publish, endpoint)
    else:
        with tempfile.TemporaryDirectory(prefix="mlqueue-train-") as tmp:
            logging.info("%s v%s: training…", name, version)
            importlib.import_module(module).train(Path(tmp), version)
            publish(Path(tmp) / name / str(version), args.publish, endpoint)
    logging.info("%s v%s: published to %s", name, version, args.publish)


if __name__ == "__main__":
    main()
