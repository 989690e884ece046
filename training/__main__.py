"""``python -m training [--force]``: train every shipped model whose artifact is missing."""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

from training.common import default_models_dir

# model name → (module with ``train(models_dir, version)``, version shipped)
SHIPPED = {
    "iris": ("training.iris", 1),
    "wine": ("training.wine", 1),
    "anomaly": ("training.anomaly", 1),
    "digits": ("training.image", 2),  # v1 (before issue 17's rendering matrix) stays as shipped
}


def is_present(version_dir: Path) -> bool:
    return (version_dir / "manifest.json").is_file() and any(p.name != "manifest.json" for p in version_dir.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--force", action="store_true", help="retrain even when the artifact exists")
    parser.add_argument("names", nargs="*", default=list(SHIPPED), help="models to train (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(message)s")
    for name in args.names:
        module, version = SHIPPED[name]
        if not args.force and is_present(args.models_dir / name / str(version)):
            logging.info("%s v%s: present", name, version)
            continue
        logging.info("%s v%s: training…", name, version)
        manifest = importlib.import_module(module).train(args.models_dir, version)
        logging.info("%s v%s: trained %s", name, version, manifest.metrics)


if __name__ == "__main__":
    main()
