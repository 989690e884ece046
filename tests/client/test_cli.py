"""The CLI as a script uses it (``python -m mlqueue``, env MLQUEUE_URL): tables, --json, image
uploads, jobs, cancel, batches from CSV, and an exit code per kind of failure."""

from __future__ import annotations

import csv
import json
import socket

import pytest
from sklearn.datasets import load_digits

from tests.api.helpers import consumption_paused
from tests.client.helpers import cli_json, run_cli
from training.image.digit_pictures import render_digit

pytestmark = pytest.mark.integration

DIGITS = load_digits()


def test_models_as_a_table_and_as_json(stack):
    table = run_cli("models", url=stack.api_url)
    assert table.returncode == 0, table.stderr
    for name in ("iris", "wine", "digits", "anomaly"):
        assert name in table.stdout
    assert "4 features" in table.stdout and "13 features" in table.stdout
    assert {m["name"] for m in cli_json("models", url=stack.api_url)} >= {"iris", "wine", "digits", "anomaly"}


def test_predict_tabular_positional_named_and_json(stack):
    plain = run_cli("predict", "iris", "5.1", "3.5", "1.4", "0.2", url=stack.api_url)
    assert plain.returncode == 0 and "label: setosa" in plain.stdout and "probabilities:" in plain.stdout
    named_values = ["sepal_length=6.7", "sepal_width=3", "petal_length=5.2", "petal_width=2.3"]
    named = run_cli("predict", "iris", *named_values, url=stack.api_url)
    assert named.returncode == 0 and "label: virginica" in named.stdout
    job = cli_json("predict", "iris", "5.9", "3.0", "4.2", "1.5", url=stack.api_url)
    assert job["status"] == "succeeded" and job["output"]["label"] == "versicolor"
    listed = cli_json("jobs", "--model", "iris", "--limit", "50", url=stack.api_url)
    assert job["id"] in [j["id"] for j in listed]
    assert job["id"] in run_cli("jobs", "--model", "iris", url=stack.api_url).stdout
    shown = run_cli("job", job["id"], url=stack.api_url)
    assert shown.returncode == 0 and "status: succeeded" in shown.stdout and '"versicolor"' in shown.stdout


def test_predict_an_image_from_a_path(stack, tmp_path):
    path = tmp_path / "digit.png"
    render_digit(DIGITS.images[1700]).save(path)
    result = run_cli("predict", "digits", str(path), url=stack.api_url)
    assert result.returncode == 0, result.stderr
    assert f"label: {DIGITS.target[1700]}" in result.stdout and "confidence:" in result.stdout


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["predict", "nosuchmodel", "1", "2"], 3, "(404 model_not_found)\n  hint: mlqueue models lists the models"),
        (["predict", "iris", "1", "2"], 2, "must have 4 values (sepal_length, sepal_width, petal_length, petal_width)"),
        (["predict", "iris", "a", "b", "c", "d"], 2, "(422 invalid_input)"),
        (["predict", "digits", "missing.png"], 2, "no such file: missing.png"),
        (["job", "01ARZ3NDEKTSV4RRFFQ69G5FAV"], 3, "(404 job_not_found)"),
        (["job", "not-a-job-id"], 3, "(404 job_not_found)"),
        (["jobs", "--model", "no spaces!"], 2, "(422 invalid_request)"),
        (["predict"], 2, "the following arguments are required: model, input"),
    ],
)
def test_failures_have_a_clear_message_and_their_exit_code(stack, args, exit_code, message):
    result = run_cli(*args, url=stack.api_url)
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert message in result.stderr


def test_json_errors_on_stdout_for_scripts(stack):
    result = run_cli("--json", "predict", "iris", "1", "2", url=stack.api_url)
    assert result.returncode == 2
    assert json.loads(result.stdout) == {
        "status": 422,
        "code": "invalid_input",
        "detail": json.loads(result.stdout)["detail"],
    }


def test_cancel_a_queued_job_a_wait_that_runs_out_and_a_finished_job(stack):
    with consumption_paused(stack.redis.url, "worker@" + socket.gethostname()):
        waited = run_cli("--json", "predict", "iris", "5.0", "3.6", "1.4", "0.2", "--wait", "1", url=stack.api_url)
        assert waited.returncode == 6 and "still queued after 1s" in waited.stderr
        job = json.loads(waited.stdout)
        canceled = run_cli("cancel", job["id"], url=stack.api_url)
        assert canceled.returncode == 0 and f"{job['id']}: canceled" in canceled.stdout
    again = run_cli("cancel", job["id"], url=stack.api_url)
    assert again.returncode == 2 and "job_not_cancelable" in again.stderr and "already finished" in again.stderr


def test_unreachable_api_exits_5(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    result = run_cli("models", url=f"http://127.0.0.1:{port}")
    assert result.returncode == 5 and f"cannot reach http://127.0.0.1:{port}" in result.stderr


def test_batch_csv_in_csv_out_with_a_bad_row_exits_1(stack, tmp_path):
    source = tmp_path / "rows.csv"
    source.write_text(
        "id,petal_width,petal_length,sepal_width,sepal_length\n"
        "a,0.2,1.4,3.5,5.1\n"
        "b,oops,1.4,3.5,5.1\n"
        "c,2.3,5.2,3.0,6.7\n"
    )
    out = tmp_path / "out.csv"
    result = run_cli("batch", "iris", str(source), "--out", str(out), url=stack.api_url)
    assert result.returncode == 1, result.stderr
    assert "2 of 3 rows succeeded, 1 failed" in result.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["index"], r["status"], r["label"]) for r in rows] == [
        ("0", "succeeded", "setosa"),
        ("1", "failed", ""),
        ("2", "succeeded", "virginica"),
    ]
    assert rows[1]["error"].startswith("invalid_input: ") and rows[0]["probabilities.setosa"]
    jsonl = run_cli("batch", "iris", str(source), url=stack.api_url)  # no --out: JSON Lines on stdout
    items = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [i["index"] for i in items] == [0, 1, 2] and items[2]["output"]["label"] == "virginica"
