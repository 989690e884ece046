"""Version resolution from worker presence (no Redis needed: the presence list is given)."""

import asyncio
from pathlib import Path

import pytest

from api.fleet import Fleet
from shared.errors import NotFound, Unavailable
from shared.manifests import ModelRepository
from shared.presence import WorkerPresence
from training import iris


class StaticFleet(Fleet):
    def __init__(self, workers):
        super().__init__(client=None, heartbeat_interval_s=1)
        self._static = workers

    async def workers(self, fresh=False):
        return self._static


def worker(name, queues=("cpu",), **versions):
    return WorkerPresence.parse({"hostname": name, "queues": list(queues), "models": {"iris": versions}})


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> ModelRepository:
    root: Path = tmp_path_factory.mktemp("models")
    for v in (1, 2, 3):
        iris.train(root, v)
    return ModelRepository(root)


def resolve(fleet, repo, pinned=None):
    return asyncio.run(fleet.resolve(repo, "iris", pinned)).version


def test_newest_version_that_a_live_worker_has_loaded(repo):
    fleet = StaticFleet(
        [
            worker(
                "a",
                **{
                    "1": {"status": "loaded"},
                    "2": {"status": "loaded"},
                    "3": {"status": "failed", "error": "sha256 mismatch"},
                },
            )
        ]
    )
    assert resolve(fleet, repo) == 2  # v3 is on disk but failed to load: v2 keeps serving
    assert resolve(fleet, repo, pinned=1) == 1
    with pytest.raises(Unavailable, match=r"v3 is not loaded on any live worker.*sha256 mismatch"):
        resolve(fleet, repo, pinned=3)


def test_no_live_worker_queues_for_the_newest_on_disk(repo):
    assert resolve(StaticFleet([]), repo) == 3


def test_unknown_versions_are_404_before_anything_else(repo):
    with pytest.raises(NotFound):
        resolve(StaticFleet([]), repo, pinned=9)


def test_gpu_models_fall_back_to_cpu_without_a_gpu_worker(repo):
    manifest = repo.get("iris").model_copy(update={"queue": "gpu"})
    assert asyncio.run(StaticFleet([worker("a")]).queue_for(manifest)) == "cpu"
    assert asyncio.run(StaticFleet([worker("a"), worker("g", queues=("gpu",))]).queue_for(manifest)) == "gpu"


@pytest.fixture
def routed_repo(tmp_path) -> ModelRepository:
    for v in (1, 2, 3):
        iris.train(tmp_path, v)
    return ModelRepository(tmp_path)


LOADED = worker("a", **{v: {"status": "loaded"} for v in ("1", "2", "3")})


def test_a_job_may_ask_for_an_alias_and_gets_its_version(routed_repo):
    routed_repo.update_routing("iris", lambda r: r.aliases.update(staging=2))
    assert resolve(StaticFleet([LOADED]), routed_repo, pinned="staging") == 2
    with pytest.raises(NotFound, match="no alias 'canary'") as caught:
        resolve(StaticFleet([LOADED]), routed_repo, pinned="canary")
    assert caught.value.code == "alias_not_found"


def test_unpinned_jobs_follow_production_then_the_newest(routed_repo):
    assert resolve(StaticFleet([LOADED]), routed_repo) == 3
    routed_repo.update_routing("iris", lambda r: r.aliases.update(production=1))
    assert resolve(StaticFleet([LOADED]), routed_repo) == 1
    assert resolve(StaticFleet([]), routed_repo) == 1  # no live worker: queued for production
    unloaded = worker("a", **{"1": {"status": "failed", "error": "sha256 mismatch"}, "3": {"status": "loaded"}})
    with pytest.raises(Unavailable, match="no version its aliases route to"):
        resolve(StaticFleet([unloaded]), routed_repo)  # never silently to v3: production was chosen


def test_the_traffic_split_draws_by_weight_among_loaded_versions(routed_repo):
    def split(r):
        r.aliases.update(production=1, candidate=3)
        r.weights = {"production": 75, "candidate": 25}

    routed_repo.update_routing("iris", split)
    versions = [resolve(StaticFleet([LOADED]), routed_repo) for _ in range(800)]
    assert set(versions) == {1, 3}
    assert 0.18 < versions.count(3) / len(versions) < 0.32
    canary_not_loaded = worker("a", **{"1": {"status": "loaded"}})
    assert {resolve(StaticFleet([canary_not_loaded]), routed_repo) for _ in range(50)} == {1}
