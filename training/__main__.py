"""``python -m training [--force]``: train every shipped model whose artifact is missing."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from training import iris
from training.common import default_models_dir

# name → (version shipped, train function)
FAMILIES = {"iris": (1, iris.train)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=default_models_dir())
    parser.add_argument("--force", action="store_true", help="retrain even when the artifact exists")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(message)s")
    for name, (version, train) in FAMILIES.items():
        version_dir = args.models_dir / name / str(version)
        if (
            not args.force
            and (version_dir / "manifest.json").is_file()
            and any(p.name != "manifest.json" for p in version_dir.iterdir())
        ):
            logging.info("%s v%s: present", name, version)
            continue
        manifest = train(args.models_dir, version)
        logging.info("%s v%s: trained %s", name, version, manifest.metrics)


if __name__ == "__main__":
    main()
