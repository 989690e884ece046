"""Version resolution from worker presence (no Redis needed: the presence list is given)."""

import asyncio
from pathlib import Path

import pytest

from api.fleet import Fleet
from shared.errors import NotFound, Unavailable
from shared.manifests import ModelRepository
from training import iris


class StaticFleet(Fleet):
    def __init__(self, workers):
        super().__init__(client=None, heartbeat_interval_s=1)
        self._static = workers

    async def workers(self, fresh=False):
        return self._static


def worker(name, queues=("cpu",), **versions):
    return {"hostname": name, "queues": list(queues), "models": {"iris": versions}}


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
