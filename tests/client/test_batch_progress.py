"""`mlqueue batch wine rows.csv --out results.csv` on 20,000 rows, in a pseudo-terminal: the live
progress bar is drawn, and the results come back one per row, in order, each with a label."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time

import pytest
from sklearn.datasets import load_wine

from tests.client.helpers import CLIENT_DIR, cli_env

pytestmark = pytest.mark.integration

ROWS = 20_000
WINE = load_wine()
FEATURES = [
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
    "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280_od315_of_diluted_wines", "proline",
]  # fmt: skip


def run_in_pty(args: list[str], env: dict[str, str], timeout_s: float = 120) -> tuple[int, str]:
    """Run with stdin/stdout/stderr on a pseudo-terminal (so the CLI sees a terminal); all it drew."""
    primary, secondary = os.openpty()
    proc = subprocess.Popen(args, stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=CLIENT_DIR)
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()


def test_a_20000_row_csv_batch_draws_a_progress_bar_and_writes_every_row_in_order(stack, tmp_path):
    source, out = tmp_path / "wine.csv", tmp_path / "results.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", *reversed(FEATURES)])  # an extra column, features in another order
        for i in range(ROWS):
            writer.writerow([i, *reversed([float(v) for v in WINE.data[i % len(WINE.data)]])])
    env = cli_env(stack.api_url) | {"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    started = time.monotonic()
    code, drawn = run_in_pty([sys.executable, "-m", "mlqueue", "batch", "wine", str(source), "--out", str(out)], env)
    elapsed = time.monotonic() - started
    assert code == 0, drawn
    assert f"{ROWS}/{ROWS}" in drawn and "━" in drawn  # rich's bar, full at the end
    assert "\x1b[" in drawn  # redrawn in place with terminal control codes: a live bar, not a log line
    assert f"{ROWS} of {ROWS} rows succeeded" in drawn
    with out.open(newline="") as f:
        results = list(csv.DictReader(f))
    assert len(results) == ROWS and [int(r["index"]) for r in results] == list(range(ROWS))
    expected = [f"class_{t}" for t in WINE.target]
    assert all(r["status"] == "succeeded" for r in results)
    # Every row labelled, and labelled like the wine it copies (the model is right on nearly all).
    agree = sum(r["label"] == expected[i % len(expected)] for i, r in enumerate(results))
    assert all(re.fullmatch(r"class_[012]", r["label"]) for r in results) and agree / ROWS > 0.9
    assert elapsed < 60
