"""The model repository on an object store (a real S3-compatible server on loopback) and in a
folder: listing, its cache and refresh, aliases written whole, an unreachable store."""

from pathlib import Path

import pytest

from shared.manifests import ModelRepository
from shared.model_store import ModelStore, StoreError
from shared.routing import Routing
from training import iris
from training.publish import PublishError, publish


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    for version in (1, 2):
        iris.train(root, version)
    return root


def test_an_s3_repository_lists_what_was_published(s3_url: str, s3_server, trained: Path):
    publish(trained / "iris" / "1", s3_url, s3_server.endpoint_url)
    repo = ModelRepository(s3_url, endpoint_url=s3_server.endpoint_url)
    assert sorted(repo.models()) == ["iris"]
    manifest = repo.get("iris")
    assert manifest.version == 1 and manifest.artifact == "model.joblib"
    assert repo.routing("iris") == Routing()


def test_the_listing_is_cached_until_refresh(s3_url: str, s3_server, trained: Path):
    publish(trained / "iris" / "1", s3_url, s3_server.endpoint_url)
    repo = ModelRepository(s3_url, max_age_s=3600, endpoint_url=s3_server.endpoint_url)
    assert sorted(repo.models()["iris"]) == [1]
    publish(trained / "iris" / "2", s3_url, s3_server.endpoint_url)
    assert sorted(repo.models()["iris"]) == [1]  # cached
    repo.refresh()  # what reload does
    assert sorted(repo.models()["iris"]) == [1, 2]


def test_a_published_version_is_immutable(s3_url: str, s3_server, trained: Path):
    publish(trained / "iris" / "1", s3_url, s3_server.endpoint_url)
    with pytest.raises(PublishError, match="already in"):
        publish(trained / "iris" / "1", s3_url, s3_server.endpoint_url)


def test_publish_refuses_an_artifact_that_differs_from_its_manifest(tmp_path: Path, s3_url: str, s3_server):
    iris.train(tmp_path, 1)
    artifact = tmp_path / "iris" / "1" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"x")
    with pytest.raises(PublishError, match="sha256 differs"):
        publish(tmp_path / "iris" / "1", s3_url, s3_server.endpoint_url)
    assert ModelStore(s3_url, s3_server.endpoint_url).listing() == {}  # nothing uploaded


def test_aliases_are_stored_in_the_repository_and_seen_by_other_readers(s3_url: str, s3_server, trained: Path):
    for version in (1, 2):
        publish(trained / "iris" / str(version), s3_url, s3_server.endpoint_url)
    writer = ModelRepository(s3_url, endpoint_url=s3_server.endpoint_url)
    writer.update_routing("iris", lambda r: r.aliases.update(production=1, staging=2))
    reader = ModelRepository(s3_url, endpoint_url=s3_server.endpoint_url)
    assert reader.routing("iris").aliases == {"production": 1, "staging": 2}
    assert reader.get("iris", "staging").version == 2
    assert "iris/aliases.json" in ModelStore(s3_url, s3_server.endpoint_url).listing()


def test_a_broken_aliases_file_is_reported_and_the_versions_still_serve(tmp_path: Path):
    iris.train(tmp_path, 1)
    (tmp_path / "iris" / "aliases.json").write_text("{not json")
    repo = ModelRepository(tmp_path)
    assert repo.get("iris").version == 1
    assert repo.routing("iris") == Routing()
    assert "iris/aliases.json" in repo.errors


def test_a_folder_repository_writes_aliases_atomically(tmp_path: Path):
    iris.train(tmp_path, 1)
    repo = ModelRepository(tmp_path)
    repo.update_routing("iris", lambda r: r.aliases.update(production=1))
    assert Routing.model_validate_json((tmp_path / "iris" / "aliases.json").read_text()).aliases == {"production": 1}
    assert [p.name for p in (tmp_path / "iris").iterdir() if p.name.endswith(".tmp")] == []


def test_an_unreachable_store_is_a_503_not_an_empty_repository(s3_server):
    from devtools.server_process import free_port

    repo = ModelRepository("s3://nowhere/models", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError) as caught:
        repo.models()
    assert caught.value.status_code == 503 and caught.value.code == "model_store_unavailable"


def test_aliases_nobody_can_read_are_never_overwritten(tmp_path: Path):
    from shared.errors import Conflict

    iris.train(tmp_path, 1)
    (tmp_path / "iris" / "aliases.json").write_text('{"aliases": {"production": "one"}}')
    with pytest.raises(Conflict, match="fix or delete it"):
        ModelRepository(tmp_path).update_routing("iris", lambda r: r.aliases.update(staging=1))
    assert (tmp_path / "iris" / "aliases.json").read_text() == '{"aliases": {"production": "one"}}'
