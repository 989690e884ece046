"""Loading models: verified by sha256, warmed up, failures recorded and never fatal."""

from pathlib import Path

import pytest

from shared.manifests import ModelRepository
from training import iris
from worker.runtime import ModelRuntime, ModelUnavailable


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    iris.train(tmp_path, version=1)
    iris.train(tmp_path, version=2)
    return tmp_path


def test_loads_every_version_and_predicts(models_dir: Path):
    runtime = ModelRuntime(ModelRepository(models_dir))
    runtime.load_all()
    output, predict_ms = runtime.predict("iris", 2, [6.7, 3.0, 5.2, 2.3])
    assert output["label"] == "virginica" and output["class_index"] == 2
    assert abs(sum(output["probabilities"].values()) - 1) < 1e-3
    assert predict_ms >= 0
    assert runtime.status()["iris"]["1"]["status"] == "loaded"


def test_tampered_artifact_is_refused_and_the_rest_still_load(models_dir: Path):
    artifact = models_dir / "iris" / "2" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    runtime = ModelRuntime(ModelRepository(models_dir))
    runtime.load_all()
    assert "sha256 mismatch" in runtime.status()["iris"]["2"]["error"]
    with pytest.raises(ModelUnavailable, match="sha256 mismatch"):
        runtime.predict("iris", 2, [1, 2, 3, 4])
    assert runtime.predict("iris", 1, [5.1, 3.5, 1.4, 0.2])[0]["label"] == "setosa"


def test_missing_artifact_is_refused(models_dir: Path):
    (models_dir / "iris" / "1" / "model.joblib").unlink()
    runtime = ModelRuntime(ModelRepository(models_dir))
    runtime.load_all()
    assert "missing" in runtime.status()["iris"]["1"]["error"]


def test_predictions_and_labels_are_counted_per_version(models_dir: Path):
    from worker.metrics import REGISTRY

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"model": "iris", **labels}) or 0.0

    runtime = ModelRuntime(ModelRepository(models_dir))
    runtime.load_all()
    before = count("mlqueue_worker_outputs_total", version="2", label="setosa")
    failed_before = count("mlqueue_worker_predictions_total", version="2", status="failed")
    v1_before = count("mlqueue_worker_outputs_total", version="1", label="setosa")
    results, _ = runtime.predict_many("iris", 2, [[5.1, 3.5, 1.4, 0.2], [5.0, 3.4, 1.5, 0.2], None])
    assert [r["label"] for r in results[:2]] == ["setosa", "setosa"] and isinstance(results[2], Exception)
    assert count("mlqueue_worker_outputs_total", version="2", label="setosa") == before + 2
    assert count("mlqueue_worker_predictions_total", version="2", status="failed") == failed_before + 1
    assert count("mlqueue_worker_outputs_total", version="1", label="setosa") == v1_before  # v1 served none
