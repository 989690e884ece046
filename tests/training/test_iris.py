import json

from shared.manifests import ModelManifest, sha256_of
from training import iris


def test_training_is_reproducible_and_writes_a_verifiable_manifest(tmp_path):
    first = iris.train(tmp_path / "a")
    second = iris.train(tmp_path / "b")
    assert first.metrics == second.metrics
    assert first.metrics["accuracy"] >= 0.9
    manifest = ModelManifest.model_validate(json.loads((tmp_path / "a/iris/1/manifest.json").read_text()))
    assert manifest.sha256 == sha256_of(tmp_path / "a/iris/1/model.joblib")
    assert manifest.labels == ["setosa", "versicolor", "virginica"]
