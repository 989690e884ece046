"""The newest shipped digits model (the one the API serves by default) reads digits however they are drawn.

A sample of ``training.digits_eval``'s rendering matrix, through the worker runtime: held-out sklearn
digits posted as PNG/JPEG in each rendering must be right and seldom ``unknown``, and non-digit
pictures must stay ``unknown``. ``make models`` runs the full matrix (200 digits) into the manifest.
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.manifests import ModelRepository
from shared.settings import REPO_ROOT
from training import digits_eval
from training.image import split_digits
from worker.runtime import ModelRuntime

PER_RENDERING = 40  # spread over the 200 held-out digits; ~4 s through the worker on one core
# What every rendering must reach today on the sample (v1 reached it on 1 of 7): no regression below this.
FLOOR_ACCURACY, FLOOR_UNKNOWN = 0.7, 0.25
# Renderings whose full-matrix figures miss issue 17's targets (>= 95 % right, <= 5 % unknown) today.
MISSED = {
    "white_on_black_nearest_64": "85.5 % right, 13.5 % unknown on the full matrix",
    "white_on_black_bilinear_96": "94.0 % right, 6.0 % unknown",
    "black_on_white_nearest_64": "90.0 % right, 8.5 % unknown",
    "black_on_white_padded_bicubic_28": "94.0 % right, 5.5 % unknown",
    "mnist_white_on_black_28": "92.5 % right, 7.5 % unknown",
    "ink_on_paper_photo_jpeg": "85.0 % right, 14.0 % unknown",
}


@pytest.fixture(scope="module")
def newest():
    repository = ModelRepository(REPO_ROOT / "models")
    manifest = repository.get("digits")  # no version: what an unpinned request gets
    return manifest, ModelRuntime(repository).get("digits", manifest.version).predictor


@pytest.fixture(scope="module")
def matrix(newest):
    return digits_eval.rendering_matrix(newest[1], PER_RENDERING, n_ood_per_kind=10)


@pytest.mark.parametrize("rendering", list(digits_eval.RENDERINGS))
def test_every_rendering_of_a_held_out_digit_is_mostly_read(matrix, rendering):
    m = matrix["renderings"][rendering]
    assert m["accuracy"] >= FLOOR_ACCURACY and m["unknown_rate"] <= FLOOR_UNKNOWN, m


@pytest.mark.parametrize(
    "rendering",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=f"issue 17 target missed: {MISSED[name]}"))
        if name in MISSED
        else name
        for name in digits_eval.RENDERINGS
    ],
)
def test_every_rendering_meets_the_issue_17_target(matrix, rendering):
    m = matrix["renderings"][rendering]
    assert m["accuracy"] >= digits_eval.TARGET_ACCURACY, m
    assert m["unknown_rate"] <= digits_eval.TARGET_UNKNOWN, m


def test_non_digits_stay_unknown(matrix):
    assert all(rate == 1.0 for rate in matrix["non_digit_unknown_rate"].values()), matrix["non_digit_unknown_rate"]


def test_the_manifest_carries_the_full_matrix_and_the_card_reports_it(newest):
    manifest = newest[0]
    full = manifest.metrics["rendering_matrix"]
    assert full["held_out_digits"] == digits_eval.HOLDOUT
    assert set(full["renderings"]) == set(digits_eval.RENDERINGS)
    assert all(name in manifest.card["evaluation"] for name in digits_eval.RENDERINGS)
    assert full["non_digit_unknown_rate_overall"] >= digits_eval.TARGET_OOD_UNKNOWN


def test_the_matrix_digits_are_never_trained_validated_or_tested_on():
    held_out = {p.tobytes() for p in digits_eval.held_out_digits()[0]}
    used = {p.tobytes() for x, _ in split_digits().values() for p in np.asarray(x)}
    assert len(held_out) == digits_eval.HOLDOUT
    assert not held_out & used
