"""(a), (c) and (d) of ``make bench``: what mlqueue is compared with. The shipped models called
in-process (``bench.raw``, in a child process so this one never imports TensorFlow), the tutorial
FastAPI + Celery service, and BentoML with adaptive batching, each on the same inputs as mlqueue."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench import load
from bench.console import say
from bench.meter import CpuMeter
from bench.session import Session
from bench.stats import tree_rss_mb
from bench.systems import bentoml_ready, bentoml_service, naive_service
from bench.workloads import IMAGE, IRIS64, RAW_IMAGE
from shared.settings import REPO_ROOT

# bench.raw's result keys → the rows they become
RAW_LABELS = {
    "iris_x1": "iris x1 (predict_batch of 1)",
    "iris_b64": "iris batch of 64",
    "digits_x1": "image x1 (predict_batch of 1)",
    "digits_b32": "image batch of 32",
    "digits_b32_decoded": RAW_IMAGE,
    "digits_keras_predict_x1": "image Keras model.predict x1",
    "png_decode": "PNG decode+resize (API side)",
}


def run_raw(s: Session) -> None:
    """(a) the model repository loaded like a worker loads it, called in-process."""
    say("(a) raw in-process: loading the model repository like a worker")
    out = s.tmp / "raw.json"
    cmd = [sys.executable, "-m", "bench.raw", "--seconds", str(s.sizes.raw_s), "--out", str(out)]
    if not s.has_image:
        cmd.append("--no-image")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MLQUEUE_LOG_LEVEL": "WARNING"}
    subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, check=True, timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    raw = json.loads(out.read_text())
    s.record.extra["raw"] = raw
    for key, label in RAW_LABELS.items():
        if key in raw:
            s.record.add(label, "raw in-process", raw[key])


async def run_naive(s: Session) -> None:
    """(c) the tutorial pattern: FastAPI + ``task.delay()`` + ``AsyncResult`` polling."""
    sizes = s.sizes
    say("(c) naive: FastAPI + task.delay() + AsyncResult polling, prefork Celery worker")
    iris, pngs = s.iris.fresh(), s.pngs.fresh()

    def iris_jobs(n: int) -> load.Spec:
        return load.naive_iris(iris.take(n))

    def image_jobs(n: int) -> load.Spec:
        return load.naive_image(pngs.take(n))

    with naive_service(s.tmp) as (url, pids):
        meter, drive = CpuMeter(pids), s.driver
        async with load.client(url, 64, s.client_kind) as http:
            await load.closed_loop(load.make_call(http, iris_jobs(4)), 4, 1, 60)  # worker up
            if s.wants("iris"):
                n, max_s = sizes.iris_c64, sizes.max_s
                await drive.measure("iris c=1", "naive", url, http, iris_jobs, min(sizes.iris_c1, 400), 1, max_s, meter)
                await drive.measure(IRIS64, "naive", url, http, iris_jobs, n, 64, max_s, meter)
            if s.wants("image") and s.has_image:
                # each prefork child loads Keras on its first task
                await load.closed_loop(load.make_call(http, image_jobs(8)), 8, 8, 120)
                n, max_s = sizes.images, sizes.naive_image_max_s
                await drive.measure(IMAGE, "naive", url, http, image_jobs, n, 32, max_s, meter)
        s.record.extra["naive_rss_mb"] = {"api": tree_rss_mb(pids["api"]), "worker": tree_rss_mb(pids["worker"])}


async def run_bentoml(s: Session, allow_install: bool) -> None:
    """(d) BentoML serving the same Keras model with adaptive batching (skipped with a note if unavailable)."""
    exe = bentoml_ready(s.record.notes, allow_install)
    if exe is None:
        say(s.record.notes[-1])
        return
    say("(d) BentoML: adaptive batching (max 32), Keras model.predict per batch")
    pngs = s.pngs.fresh()

    def image_jobs(n: int) -> load.Spec:
        return load.bento(pngs.take(n))

    try:
        with bentoml_service(s.tmp, exe, REPO_ROOT / "models" / "digits" / "1" / "model.keras") as (url, pids):
            meter = CpuMeter(pids)
            async with load.client(url, 32, s.client_kind) as http:
                n, max_s = s.sizes.images, 3 * s.sizes.max_s
                await s.driver.measure(IMAGE, "bentoml", url, http, image_jobs, n, 32, max_s, meter)
            s.record.extra["bentoml_rss_mb"] = tree_rss_mb(pids["bentoml"])
            s.record.extra["bentoml_version"] = subprocess.run(
                [str(exe.with_name("python")), "-c", "import bentoml; print(bentoml.__version__)"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
    except RuntimeError as exc:
        s.record.notes.append(f"BentoML skipped: {exc}")
        say(s.record.notes[-1])
