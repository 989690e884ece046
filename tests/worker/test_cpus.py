"""Thread caps follow the CPUs a worker may use, not the host's core count."""

import os

import pytest

from worker.context import available_cpus


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", None)],
)
def test_a_cgroup_cpu_quota_caps_the_count(tmp_path, cpu_max, limit):
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    host = len(os.sched_getaffinity(0))
    assert available_cpus(path) == (min(host, limit) if limit else host)


def test_without_a_cgroup_file_it_is_the_affinity_set(tmp_path):
    assert available_cpus(tmp_path / "missing") == len(os.sched_getaffinity(0))


def test_a_garbled_cgroup_file_is_ignored(tmp_path):
    path = tmp_path / "cpu.max"
    path.write_text("nonsense")
    assert available_cpus(path) == len(os.sched_getaffinity(0))
