"""Artifacts from an object store (a real S3-compatible server on loopback): downloaded once,
verified before the rename, a tampered object refused with nothing left in the cache."""

from pathlib import Path

import pytest

from shared.manifests import ModelRepository
from shared.model_store import ModelStore
from training import iris
from training.publish import publish
from worker.artifacts import ArtifactError, cache_path, fetch_artifact
from worker.runtime import ModelRuntime, ModelUnavailable


@pytest.fixture
def s3_repo(tmp_path: Path, s3_url: str, s3_server) -> ModelRepository:
    iris.train(tmp_path / "trained", 1)
    publish(tmp_path / "trained" / "iris" / "1", s3_url, s3_server.endpoint_url)
    return ModelRepository(s3_url, endpoint_url=s3_server.endpoint_url, cache_dir=tmp_path / "cache")


def test_a_worker_loads_and_serves_a_model_from_s3(s3_repo: ModelRepository):
    runtime = ModelRuntime(s3_repo)
    runtime.load_all()
    assert runtime.status()["iris"]["1"]["status"] == "loaded"
    assert runtime.predict("iris", 1, [5.1, 3.5, 1.4, 0.2])[0]["label"] == "setosa"
    assert cache_path(s3_repo, s3_repo.get("iris", 1)).is_file()


def test_an_artifact_is_downloaded_once(s3_repo: ModelRepository):
    manifest = s3_repo.get("iris", 1)
    first = fetch_artifact(s3_repo, manifest)
    s3_repo.store.fs.rm_file(s3_repo.store.path("iris/1/model.joblib"))  # gone upstream: the cache serves
    assert fetch_artifact(s3_repo, manifest) == first


def test_a_tampered_object_is_refused_and_nothing_is_cached(s3_repo: ModelRepository):
    store: ModelStore = s3_repo.store
    good = store.read("iris/1/model.joblib")
    store.write("iris/1/model.joblib", good[:-8] + b"tampered")
    runtime = ModelRuntime(s3_repo)
    runtime.load_all()
    error = runtime.status()["iris"]["1"]["error"]
    assert "sha256 mismatch" in error and "refusing to load" in error and "s3://" in error
    with pytest.raises(ModelUnavailable, match="sha256 mismatch"):
        runtime.predict("iris", 1, [5.1, 3.5, 1.4, 0.2])
    assert [p for p in s3_repo.cache_dir.rglob("*") if p.is_file()] == []  # no partial, no bad download


def test_a_corrupted_cache_file_is_downloaded_again(s3_repo: ModelRepository):
    manifest = s3_repo.get("iris", 1)
    cached = fetch_artifact(s3_repo, manifest)
    cached.write_bytes(b"rotten")
    assert fetch_artifact(s3_repo, manifest).read_bytes() == s3_repo.store.read("iris/1/model.joblib")


def test_a_missing_object_is_refused(s3_repo: ModelRepository):
    s3_repo.store.fs.rm_file(s3_repo.store.path("iris/1/model.joblib"))
    with pytest.raises(ArtifactError, match="missing"):
        fetch_artifact(s3_repo, s3_repo.get("iris", 1))


@pytest.mark.parametrize("artifact", ["../../escape.joblib", "sub/model.joblib", ".."])
def test_a_manifest_whose_artifact_climbs_out_of_the_cache_is_refused(s3_repo: ModelRepository, artifact: str):
    manifest = s3_repo.get("iris", 1).model_copy(update={"artifact": artifact})
    with pytest.raises(ArtifactError, match="malformed"):
        fetch_artifact(s3_repo, manifest)
