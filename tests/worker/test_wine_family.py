"""The shipped wine classifier (models/wine/1) through the model runtime."""

import pytest
from sklearn.datasets import load_wine

from shared.manifests import ModelRepository
from shared.settings import REPO_ROOT
from worker.runtime import ModelRuntime

LABELS = ["class_0", "class_1", "class_2"]


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    runtime = ModelRuntime(ModelRepository(REPO_ROOT / "models"))
    runtime.load_all()
    assert runtime.status()["wine"]["1"]["status"] == "loaded", runtime.status()["wine"]
    return runtime


def first_row_of(class_index: int) -> list[float]:
    data = load_wine()
    return data.data[list(data.target).index(class_index)].tolist()


@pytest.mark.parametrize("class_index", [0, 1, 2])
def test_a_known_wine_of_each_cultivar(runtime, class_index):
    row = first_row_of(class_index)
    output, _ = runtime.predict("wine", 1, row)
    assert output["label"] == LABELS[class_index] and output["class_index"] == class_index
    assert list(output["probabilities"]) == LABELS
    assert sum(output["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert max(output["probabilities"].values()) == output["probabilities"][LABELS[class_index]]


def test_named_input_matches_positional(runtime):
    names = runtime.get("wine", 1).manifest.feature_names
    row = first_row_of(2)
    named, _ = runtime.predict("wine", 1, dict(zip(names, row, strict=True)))
    assert named == runtime.predict("wine", 1, row)[0]
