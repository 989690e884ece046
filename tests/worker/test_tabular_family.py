"""The tabular fast path for batches must accept exactly what row-by-row validation accepts, and
answer exactly what a single job answers."""

import json
import math

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shared.manifests import ModelRepository
from shared.settings import REPO_ROOT
from worker.families.tabular import TabularClassifier, compiled_predict_proba


@pytest.fixture(scope="module")
def iris() -> TabularClassifier:
    manifest = ModelRepository(REPO_ROOT / "models").get("iris", 1)
    return TabularClassifier(manifest, REPO_ROOT / "models/iris/1" / manifest.artifact)


def test_predict_json_writes_exactly_the_json_of_predict_batch(iris):
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.normal(5, 2, (500, 4)), rng.normal(0, 1e6, (20, 4)), np.zeros((1, 4))]).tolist()
    assert [json.loads(text) for text in iris.predict_json(rows)] == iris.predict_batch(rows)


def test_the_compiled_model_call_gives_scikit_learns_probabilities(iris):
    rows = np.random.default_rng(1).normal(5, 3, (300, 4))
    assert iris._predict_proba is not iris.model.predict_proba  # the shipped pipeline compiles
    np.testing.assert_array_equal(iris._predict_proba(rows), iris.model.predict_proba(rows))
    np.testing.assert_array_equal(iris._predict_proba(rows[:1]), iris.model.predict_proba(rows[:1]))


SCALINGS = [{"with_std": False}, {"with_mean": False}, {"with_mean": False, "with_std": False}]


@pytest.mark.parametrize("scaling", SCALINGS)
def test_scalers_without_mean_or_scale_compile_too(iris, scaling):
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(**scaling), LogisticRegression(max_iter=1000)).fit(x, y)
    compiled = compiled_predict_proba(model, iris.manifest)
    assert compiled is not None
    np.testing.assert_array_equal(compiled(x), model.predict_proba(x))


def test_other_pipelines_run_through_scikit_learn(iris):
    binary = make_pipeline(StandardScaler(), LogisticRegression()).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    assert compiled_predict_proba(binary, iris.manifest) is None
    assert compiled_predict_proba(LogisticRegression().fit([[0.0], [1.0], [2.0]], [0, 1, 2]), iris.manifest) is None


def test_plain_positional_rows_are_taken_whole(iris):
    rows = [[5.1, 3.5, 1.4, 0.2], [6, 3, 5, 2]]
    assert iris.prepare_many(rows) == rows
    assert iris.predict_batch(rows) == [iris.predict_batch([row])[0] for row in rows]


@pytest.mark.parametrize(
    "bad",
    [
        [1.0, 2.0, 3.0],  # count
        [1.0, 2.0, 3.0, math.nan],
        [1.0, 2.0, 3.0, math.inf],
        [1.0, True, 3.0, 4.0],
        [1.0, "2", 3.0, 4.0],
        {"sepal_length": 1, "sepal_width": 2, "petal_length": 3, "petal_width": 4},  # named: row by row
        None,
    ],
)
def test_anything_else_falls_back_to_row_by_row(iris, bad):
    assert iris.prepare_many([[5.1, 3.5, 1.4, 0.2], bad]) is None
