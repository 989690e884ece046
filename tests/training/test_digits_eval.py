"""The newest shipped digits model (the one the API serves by default) reads digits however they are drawn.

``training.digits_eval``'s rendering matrix through the worker runtime: the 200 held-out sklearn
digits posted as PNG/JPEG in each rendering must be right and seldom ``unknown``, and non-digit
pictures must stay ``unknown``. All 200 (about 10 s on one core): smaller samples of these
writers swing by several points, more than the gaps the targets are about. ``make models``
writes the same matrix into the manifest.
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.manifests import ModelRepository
from shared.settings import REPO_ROOT
from training import digits_eval
from training.image.data import split_digits
from worker.runtime import ModelRuntime

# every rendering of the held-out digits through the shipped model: seconds (the module fixture)
pytestmark = pytest.mark.slow

PER_RENDERING = digits_eval.HOLDOUT
# What every rendering must reach (v2 reaches 85 % / 14.5 % at worst; v1 reached this on 1 of 7): no regression.
FLOOR_ACCURACY, FLOOR_UNKNOWN = 0.83, 0.16
# Renderings whose full-matrix figures miss issue 17's targets (>= 95 % right, <= 5 % unknown) today.
MISSED = {
    "white_on_black_nearest_64": "87.0 % right, 12.0 % unknown",
    "white_on_black_bilinear_96": "94.0 % right, 6.0 % unknown",
    "black_on_white_nearest_64": "92.0 % right, 7.0 % unknown",
    "black_on_white_bilinear_96": "91.5 % right, 7.5 % unknown",
    "ink_on_paper_photo_jpeg": "85.0 % right, 14.5 % unknown",
}


@pytest.fixture(scope="module")
def newest():
    repository = ModelRepository(REPO_ROOT / "models")
    manifest = repository.get("digits")  # no version: what an unpinned request gets
    return manifest, ModelRuntime(repository).get("digits", manifest.version).predictor


@pytest.fixture(scope="module")
def matrix(newest):
    return digits_eval.rendering_matrix(newest[1], PER_RENDERING, n_ood_per_kind=100)


@pytest.mark.parametrize("rendering", list(digits_eval.RENDERINGS))
def test_every_rendering_of_a_held_out_digit_is_mostly_read(newest, matrix, rendering):
    m = matrix["renderings"][rendering]
    assert m == newest[0].metrics["rendering_matrix"]["renderings"][rendering]  # what the card says
    assert m["accuracy"] >= FLOOR_ACCURACY and m["unknown_rate"] <= FLOOR_UNKNOWN, m


@pytest.mark.parametrize(
    "rendering",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=f"issue 17 target missed: {MISSED[name]}", strict=True))
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
    rates = matrix["non_digit_unknown_rate"]
    assert all(rate >= digits_eval.TARGET_OOD_UNKNOWN for rate in rates.values()), rates


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
