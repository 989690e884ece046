"""The model card: what the model is for, its data, algorithm and limits, and how it scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.digits_eval import HOLDOUT


def model_card(
    data_dir: Path | None, transfer: bool, kinds: tuple[str, ...], metrics: dict[str, Any]
) -> dict[str, str]:
    """Summary, data, algorithm and limitations (and, for digits, the rendering matrix) in words."""
    # metrics: the manifest's JSON object, values of mixed types (numbers, None, nested dicts)
    if data_dir is None:
        summary = "A handwritten digit (0-9) from a picture; 'unknown' for anything that is not a digit."
        data = (
            f"scikit-learn load_digits (1,797 8x8 images): the last {HOLDOUT} held out for the rendering matrix "
            "(never trained, validated, calibrated or tested on), the rest in a stratified 80/10/10 "
            "train/val/test split (seed 42), rendered as RGB pictures in both "
            "polarities, elastically warped, as the whole 8x8 frame upscaled blocky (nearest) or smooth and "
            "slanted, or drawn small, off-centre, rotated, thin or thick, with varied ink, paper grain, light, "
            "blur, noise and JPEG; "
            "background class: synthetic noise, solid colours, gradients, shapes (twice as many), textures and "
            "crops of scikit-learn's china.jpg (evaluated on flower.jpg crops and other seeds)"
        )
        limitations = (
            "Digits rebuilt from 8x8 scans: fine detail of real handwriting is unseen. One centred digit per "
            "picture; multi-digit numbers, heavy clutter or strong perspective are out of scope. Out-of-"
            "distribution detection was trained on synthetic pictures and crops of one photo, not real-world variety."
        )
    else:
        summary = f"Image classes from the folders of {Path(data_dir).name}; 'unknown' below the threshold."
        data = f"{data_dir}: one folder per class, stratified 80/20 train/test split (seed 42)"
        limitations = "Only as good as the folder; 'unknown' was trained on synthetic pictures only."
    base = "frozen ImageNet MobileNetV2 base + new head" if transfer else "inverted-residual CNN from scratch"
    if data_dir is None:
        base += (
            " behind a fixed polarity step (a picture whose centre is brighter than the whole, light ink on a dark "
            "ground, is inverted, so both polarities reach the network as dark ink on light paper)"
        )
    threshold = f"threshold {metrics['threshold']}"
    if "threshold_calibration" in metrics:
        c = metrics["threshold_calibration"]
        threshold += (
            f", the lowest (0.05 steps) at which {c['unknown_rate_per_kind']:.1%} of each background kind's "
            f"{c['pictures_per_kind']} fresh calibration pictures answer unknown"
        )
    card = {}
    if "rendering_matrix" in metrics:
        matrix = metrics["rendering_matrix"]
        rows = "; ".join(
            f"{name} {m['accuracy']:.1%} right, {m['unknown_rate']:.1%} unknown"
            for name, m in matrix["renderings"].items()
        )
        card["evaluation"] = (
            f"rendering matrix (training.digits_eval), {matrix['held_out_digits']} held-out digits per rendering, "
            f"uploaded as files through preprocess_image and the worker: {rows}. Non-digit pictures answered "
            f"unknown: {matrix['non_digit_unknown_rate_overall']:.1%} "
            f"({', '.join(f'{k} {v:.1%}' for k, v in matrix['non_digit_unknown_rate'].items())})"
        )
    return {
        "summary": summary,
        "data": data,
        "algorithm": (
            f"{base}, Adam with cosine decay, plus a hidden background class trained on {', '.join(kinds)}; "
            f"logits divided by a validation-fitted temperature ({metrics['temperature']}), background probability "
            f"spread evenly over the labels, all inside the saved model; {threshold}"
        ),
        "limitations": limitations,
    } | card
