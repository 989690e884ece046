"""``bench.capacity`` (the inputs of docs/capacity.md): its arithmetic, its inputs, and one tiny run of
the real thing through the HTTP API. Nothing here asserts performance; the numbers are only printed."""

from __future__ import annotations

import json
import re

import pytest

from bench import capacity
from bench.capacity import Background, Reading, feature_rows, per_job
from shared.manifests import scan_models, validate_features
from shared.settings import REPO_ROOT

MANIFESTS, _ = scan_models(REPO_ROOT / "models")


def newest(name: str):
    return MANIFESTS[name][max(MANIFESTS[name])]


@pytest.mark.parametrize("name", ["iris", "wine", "anomaly"])
def test_feature_rows_are_distinct_and_valid_inputs(name):
    manifest = newest(name)
    rows = feature_rows(manifest, 500, seed=3)
    assert len({tuple(r) for r in rows}) == 500
    for row in rows[:50]:
        validate_features(manifest, row)  # what the API checks: names, count, finite numbers
    assert feature_rows(manifest, 20, seed=3) == rows[:20]  # only the seed decides


def test_per_job_subtracts_the_background_and_its_own_commands():
    before = Reading(at=0.0, used_memory=1_000, keys=10, calls={"hset": 5, "info": 3}, cpu_s={"worker": 1.0, "api": 0})
    after = Reading(
        at=10.0,
        used_memory=1_000 + 100 * 2_000,
        keys=210,
        calls={"hset": 5 + 300 + 50, "info": 90, "publish": 200, "get": 2},
        cpu_s={"worker": 1.0 + 0.5 + 0.1, "api": 0.2},
    )
    background = Background(commands_per_s={"hset": 5.0}, cpu_per_s={"worker": 0.01, "api": 0.0})
    out = per_job(before, after, 100, background)
    assert out["redis_bytes_per_job"] == 2_000 and out["redis_keys_per_job"] == 2.0
    # hset: 350 calls, 50 of them the background's (5/s over 10 s); info is the script's own; get is noise
    assert out["redis_commands_by_name"] == {"hset": 3.0, "publish": 2.0}
    assert out["redis_commands_per_job"] == 5.0
    assert out["cpu_ms_per_job"] == {"worker": pytest.approx(5.0), "api": pytest.approx(2.0)}


def test_an_unknown_model_is_refused_before_anything_starts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        capacity.main(["--tiny", "--models", "iris,nosuch"])
    assert exit_info.value.code == 2
    assert "unknown model(s) ['nosuch']" in capsys.readouterr().err


@pytest.mark.integration
def test_a_tiny_run_measures_every_model_through_the_api(tmp_path, capsys):
    out = tmp_path / "capacity.json"
    result = capacity.main(["--tiny", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [row["model"] for row in result["rows"]] == ["iris", "wine", "anomaly", "digits"]
    for row in result["rows"]:
        assert row["jobs"] == capacity.TINY.jobs[row["model"]], row
        assert row["redis_commands_per_job"] > 0, row
        assert isinstance(row["redis_bytes_per_job"], int)  # a few jobs: allocator noise can outweigh them
        assert set(row["cpu_ms_per_job"]) == {"api", "worker", "redis"}
    expiry = result["expiry"]
    # Every job answered 410 after its TTL, and what it left (the tombstone) is smaller than the job was.
    iris = result["rows"][0]
    assert 0 < expiry["expired_key_bytes_per_job"] < iris["redis_key_bytes_per_job"]
    report = capsys.readouterr().out
    assert all(name in report for name in ("iris", "wine", "anomaly", "digits", "after the job TTL"))


def test_the_capacity_page_names_its_run_and_every_model_it_measured():
    page = (REPO_ROOT / "docs" / "capacity.md").read_text()
    assert "**Run**: `python -m bench.capacity` on " in page
    table = page.split("```", 2)[1]  # the run's own output, pasted as printed
    measured = [line.split()[0] for line in table.splitlines() if re.match(r"^[a-z]+\s+\d+\s", line)]
    assert measured == list(capacity.Sizes().jobs)
