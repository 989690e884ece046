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
from training.image.background import OOD_KINDS
from training.image.data import split_digits
from worker.runtime import ModelRuntime

# every rendering of the held-out digits through the shipped model: seconds (the module fixture)
pytestmark = pytest.mark.slow

PER_RENDERING = digits_eval.HOLDOUT
# What every rendering must reach (v3 reaches 94 % / 4.5 % at worst, v2 85 % / 14.5 %): no regression.
FLOOR_ACCURACY, FLOOR_UNKNOWN = 0.92, 0.07
# Renderings whose full-matrix figures miss issue 17's targets (>= 95 % right, <= 5 % unknown) today.
MISSED = {"ink_on_paper_photo_jpeg": "94.0 % right, 4.5 % unknown"}
# Non-digit kinds below issue 17's >= 99 % unknown today (v2: 100 %; v3 reads 2 of 100 flower crops as a 9).
MISSED_NON_DIGITS = {"photo": "98 % unknown"}


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


def test_every_non_digit_kind_is_measured(matrix):
    assert set(matrix["non_digit_unknown_rate"]) == set(OOD_KINDS)


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(k, marks=pytest.mark.xfail(reason=f"issue 17 target missed: {MISSED_NON_DIGITS[k]}", strict=True))
        if k in MISSED_NON_DIGITS
        else k
        for k in OOD_KINDS
    ],
)
def test_non_digits_stay_unknown(matrix, kind):
    assert matrix["non_digit_unknown_rate"][kind] >= digits_eval.TARGET_OOD_UNKNOWN, matrix["non_digit_unknown_rate"]


def test_the_manifest_carries_the_full_matrix_and_the_card_reports_it(newest):
    manifest = newest[0]
    full = manifest.metrics["rendering_matrix"]
    assert full["held_out_digits"] == digits_eval.HOLDOUT
    assert set(full["renderings"]) == set(digits_eval.RENDERINGS)
    assert all(name in manifest.card["evaluation"] for name in digits_eval.RENDERINGS)
    assert full["non_digit_unknown_rate_overall"] >= digits_eval.TARGET_OOD_UNKNOWN
    assert "threshold_calibration" in manifest.metrics and str(manifest.threshold) in manifest.card["algorithm"]


def test_the_matrix_digits_are_never_trained_validated_or_tested_on():
    held_out = {p.tobytes() for p in digits_eval.held_out_digits()[0]}
    used = {p.tobytes() for x, _ in split_digits().values() for p in np.asarray(x)}
    assert len(held_out) == digits_eval.HOLDOUT
    assert not held_out & used
