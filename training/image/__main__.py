"""``python -m training.image [--data DIR] [--weights FILE] [--name NAME] [--epochs N] [--version N]
[--models-dir DIR] [--publish URL]``: train one image-classifier version (the package docstring says how)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import training.image
from training.common import MODELS_DIR_HELP, add_publish_argument, output_dir, publish_if_asked
from training.image import DIGITS_VERSION
from training.image.train import train


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.image",
        description=training.image.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, help="folder of <class>/*.jpg|jpeg|png; default: sklearn digits")
    parser.add_argument("--weights", type=Path, help="local MobileNetV2 include_top=False weights (transfer)")
    parser.add_argument("--name", help="model name (default: digits, or the data folder's name)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--version", type=int, help=f"default: {DIGITS_VERSION} for digits, 1 for a folder")
    parser.add_argument("--models-dir", type=Path, help=MODELS_DIR_HELP)
    add_publish_argument(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with output_dir(args) as models_dir:
        manifest = train(
            models_dir,
            args.version,
            data_dir=args.data,
            weights=args.weights,
            name=args.name,
            epochs=args.epochs,
            image_size=args.image_size,
        )
        publish_if_asked(args, models_dir, manifest)
    print(f"{manifest.name} v{manifest.version}: {manifest.metrics}")  # noqa: T201 - CLI output


if __name__ == "__main__":
    main()
