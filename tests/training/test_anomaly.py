import json
import subprocess
import sys

import numpy as np

from shared.manifests import ModelManifest, sha256_of
from shared.settings import REPO_ROOT
from training import anomaly


def test_training_is_reproducible_and_writes_a_verifiable_manifest(tmp_path):
    first = anomaly.train(tmp_path / "a")
    second = anomaly.train(tmp_path / "b")
    assert first.metrics == second.metrics
    # The artifact itself is byte-for-byte the same: same seed, same data, same estimators.
    assert first.sha256 == second.sha256
    manifest = ModelManifest.model_validate(json.loads((tmp_path / "a/anomaly/1/manifest.json").read_text()))
    assert manifest.sha256 == sha256_of(tmp_path / "a/anomaly/1/model.joblib")
    assert (manifest.framework, manifest.task, manifest.queue, manifest.labels) == ("sklearn", "anomaly", "cpu", [])
    assert manifest.input.echo == ["observation_id"]
    assert len(manifest.feature_names) == 8
    assert manifest.batching.max_batch_size == 256
    assert {"summary", "data", "algorithm", "score", "limitations"} <= set(manifest.card)
    # Small enough to ship in the repository: LOF keeps its 4000 training rows.
    assert (tmp_path / "a/anomaly/1/model.joblib").stat().st_size < 5 * 1024 * 1024


def test_held_out_quality(tmp_path):
    metrics = anomaly.train(tmp_path).metrics
    assert metrics["test_rows"] == anomaly.TEST_ROWS
    assert metrics["test_anomalies"] >= 0.05 * anomaly.TEST_ROWS
    # Measured: ensemble P 1.0 / R 0.976 / F1 0.988. Floors leave room for library changes, not for a broken model.
    assert metrics["f1"] >= 0.9 and metrics["precision"] >= 0.9 and metrics["recall"] >= 0.9
    assert metrics["false_positive_rate"] <= 0.01
    detectors = metrics["detectors"]
    assert set(detectors) == {"isolation_forest", "local_outlier_factor", "zscore"}
    assert detectors["isolation_forest"]["f1"] >= 0.9 and detectors["local_outlier_factor"]["f1"] >= 0.9
    # The z-score only sees a sensor outside its own range: precise, blind to correlation breaks.
    assert detectors["zscore"]["precision"] >= 0.9 and detectors["zscore"]["recall"] >= 0.4
    assert min(metrics["recall_by_kind"].values()) >= 0.8
    assert 3.0 <= metrics["thresholds"]["zscore"] <= 6.0


def test_dataset_has_the_documented_shape():
    data = anomaly.make_dataset()
    x_train, y_train, _ = data["train"]
    x_test, y_test, kinds = data["test"]
    assert x_train.shape == (anomaly.TRAIN_ROWS, 8) and x_test.shape == (anomaly.TEST_ROWS, 8)
    assert 0.01 <= y_train.mean() < 0.02 and 0.05 <= y_test.mean() < 0.06
    assert set(kinds[y_test]) == set(anomaly.KINDS) and set(kinds[~y_test]) == {""}
    assert np.isfinite(x_test).all()
    np.testing.assert_array_equal(anomaly.make_dataset()["test"][0], x_test)


def test_the_artifact_loads_without_training_code(tmp_path):
    """A worker never imports ``training``: the artifact is a plain dict of library objects, nothing pickled from it."""
    anomaly.train(tmp_path)
    code = (
        "import sys, joblib\n"
        f"model = joblib.load({str(tmp_path / 'anomaly/1/model.joblib')!r})\n"
        "assert type(model) is dict, type(model)\n"
        "leaked = [m for m in sys.modules if m == 'training' or m.startswith('training.')]\n"
        "assert not leaked, leaked\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
