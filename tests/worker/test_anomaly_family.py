"""The shipped anomaly ensemble (models/anomaly/1) through the model runtime, as a worker runs it."""

import math
from pathlib import Path

import joblib
import pytest

from shared.errors import InvalidInput
from shared.manifests import ModelRepository
from shared.settings import REPO_ROOT
from training.common import write_version
from worker.runtime import ModelRuntime

# A typical day-shift reading, and a pump whose bearings are going: vibration and heat at a normal load.
NORMAL = {
    "temperature_c": 43.5,
    "pressure_bar": 5.1,
    "vibration_mm_s": 3.15,
    "humidity_pct": 47.0,
    "flow_rate_l_min": 165.0,
    "power_kw": 17.0,
    "current_a": 28.8,
    "rotation_speed_rpm": 1380.0,
}
NIGHT = {**NORMAL, "temperature_c": 26.0, "pressure_bar": 3.1, "vibration_mm_s": 2.1, "humidity_pct": 62.0}
NIGHT |= {"flow_rate_l_min": 96.0, "power_kw": 8.9, "current_a": 15.1, "rotation_speed_rpm": 1110.0}
BEARING_WEAR = {**NORMAL, "temperature_c": 56.0, "vibration_mm_s": 7.0}
DETECTORS = {"isolation_forest", "local_outlier_factor", "zscore"}


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    runtime = ModelRuntime(ModelRepository(REPO_ROOT / "models"))
    runtime.load_all()
    assert runtime.status()["anomaly"]["1"]["status"] == "loaded", runtime.status()["anomaly"]
    return runtime


def predict(runtime: ModelRuntime, raw):
    return runtime.predict("anomaly", 1, raw)[0]


def extreme(runtime: ModelRuntime, sigmas: float) -> list[float]:
    """Every sensor ``sigmas`` training standard deviations away from its training mean."""
    predictor = runtime.get("anomaly", 1).predictor
    return (predictor.center + sigmas * predictor.scale).tolist()


@pytest.mark.parametrize("reading", [NORMAL, NIGHT], ids=["day", "night"])
def test_a_typical_reading_is_normal(runtime, reading):
    output = predict(runtime, reading)
    assert output == {
        "is_anomaly": False,
        "anomaly_score": output["anomaly_score"],
        "votes": dict.fromkeys(DETECTORS, False),
    }
    assert 0 <= output["anomaly_score"] < 0.2


@pytest.mark.parametrize("sigmas", [50, -50])
def test_an_extreme_reading_is_anomalous_by_every_detector(runtime, sigmas):
    output = predict(runtime, extreme(runtime, sigmas))
    assert output["is_anomaly"] is True
    assert output["votes"] == dict.fromkeys(DETECTORS, True)
    assert 0.95 <= output["anomaly_score"] <= 1


def test_a_correlation_break_inside_the_normal_ranges_is_caught(runtime):
    output = predict(runtime, BEARING_WEAR)
    assert output["is_anomaly"] is True and output["anomaly_score"] > 0.5


def test_observation_id_is_echoed(runtime):
    assert predict(runtime, {**NORMAL, "observation_id": "pump-7/2024-05-01T14:00"})["observation_id"] == (
        "pump-7/2024-05-01T14:00"
    )
    assert predict(runtime, {**NORMAL, "observation_id": 42})["observation_id"] == 42
    assert "observation_id" not in predict(runtime, NORMAL)


def test_positional_input_is_in_manifest_order(runtime):
    names = runtime.get("anomaly", 1).manifest.feature_names
    assert predict(runtime, [NORMAL[n] for n in names]) == predict(runtime, NORMAL)


def test_a_batch_equals_one_by_one(runtime):
    predictor = runtime.get("anomaly", 1).predictor
    rows = [NORMAL, NIGHT, BEARING_WEAR, {**NORMAL, "observation_id": "x"}, extreme(runtime, 50), extreme(runtime, 3)]
    batch = predictor.predict_batch([predictor.prepare(r) for r in rows])
    assert len(batch) == len(rows)
    for row, together in zip(rows, batch, strict=True):
        alone = predict(runtime, row)
        assert together["anomaly_score"] == pytest.approx(alone["anomaly_score"], abs=1e-6)
        assert {**together, "anomaly_score": 0} == {**alone, "anomaly_score": 0}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1.0] * 7, "must have 8 values"),
        ([1.0] * 9, "must have 8 values"),
        ({**NORMAL, "pressure_bar": math.nan}, "pressure_bar must be a finite number"),
        ({**NORMAL, "power_kw": math.inf}, "finite"),
        ({**NORMAL, "power_kw": "17"}, "power_kw must be a number, got str"),
        ({**NORMAL, "power_kw": True}, "got bool"),
        ({**NORMAL, "colour": 1}, "unknown colour"),
        ({k: v for k, v in NORMAL.items() if k != "current_a"}, "missing current_a"),
        ({**NORMAL, "observation_id": {"site": 7}}, "observation_id must be a string or integer"),
        ({**NORMAL, "observation_id": "x" * 201}, "observation_id must be a string or integer"),
        ("1,2,3,4,5,6,7,8", "must be an object"),
    ],
)
def test_bad_input_is_refused(runtime, raw, message):
    with pytest.raises(InvalidInput, match=message):
        predict(runtime, raw)


def test_an_artifact_that_is_not_an_ensemble_fails_to_load_and_is_recorded(tmp_path: Path):
    manifest = ModelRepository(REPO_ROOT / "models").get("anomaly", 1)
    fields = manifest.model_dump(mode="json", exclude={"artifact", "sha256", "trained_at"})
    write_version(tmp_path, fields, "model.joblib", lambda path: joblib.dump({"lof": None}, path))
    runtime = ModelRuntime(ModelRepository(tmp_path))
    runtime.load_all()
    assert "not an anomaly ensemble" in runtime.status()["anomaly"]["1"]["error"]
