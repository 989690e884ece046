import json

from shared.manifests import ModelManifest, sha256_of
from training import wine


def test_training_is_reproducible_and_writes_a_verifiable_manifest(tmp_path):
    first = wine.train(tmp_path / "a")
    second = wine.train(tmp_path / "b")
    assert first.metrics == second.metrics
    assert first.metrics["accuracy"] >= 0.9 and first.metrics["f1_macro"] >= 0.9
    assert first.metrics["test_rows"] == 36
    assert first.metrics["classifier"] in first.metrics["cv_f1_macro"]
    manifest = ModelManifest.model_validate(json.loads((tmp_path / "a/wine/1/manifest.json").read_text()))
    assert manifest.sha256 == sha256_of(tmp_path / "a/wine/1/model.joblib")
    assert manifest.labels == ["class_0", "class_1", "class_2"]
    assert (manifest.framework, manifest.task, manifest.queue) == ("sklearn", "classification", "cpu")


def test_feature_names_are_json_friendly_and_keep_the_dataset_order(tmp_path):
    manifest = wine.train(tmp_path, version=3)
    names = manifest.feature_names
    assert len(names) == 13 and names[0] == "alcohol" and names[-1] == "proline"
    assert "od280_od315_of_diluted_wines" in names
    assert all(n.replace("_", "").isalnum() for n in names)
    described = {f.name: f.description for f in manifest.input.features}
    assert "od280/od315_of_diluted_wines" in described["od280_od315_of_diluted_wines"]
    assert manifest.version == 3 and (tmp_path / "wine/3/model.joblib").is_file()
