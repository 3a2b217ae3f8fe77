"""Thread selection: the CPUs a process may use (affinity, cgroup quota), shared with its loader workers and the
other local processes; explicit choices win."""
import os

import pytest

from segmentation.config import load_config
from segmentation.utils import runtime


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2 with a quota
    ({"cpu.max": "max 100000\n"}, None),  # v2 without
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),  # no cgroup files
])
def test_the_cgroup_quota_is_read_from_v1_and_v2_files(tmp_path, files, expected):
    for name, text in files.items():
        _write(tmp_path / name, text)
    assert runtime.cgroup_cpu_limit(str(tmp_path)) == expected


def test_available_cpus_is_the_affinity_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda: 2.5)
    assert runtime.available_cpus() == 2
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda: None)
    assert runtime.available_cpus() == 8


@pytest.mark.parametrize("opts, env, cpus, expected", [
    (["DATALOADER.NUM_WORKERS", "1"], {}, 8, 7),
    (["DATALOADER.NUM_WORKERS", "2"], {"LOCAL_WORLD_SIZE": "2"}, 8, 2),  # 8 / 2 processes - 2 workers
    (["DATALOADER.NUM_WORKERS", "4"], {}, 2, 1),  # never below 1
    (["DATALOADER.NUM_WORKERS", "1", "NUM_THREADS", "3"], {"OMP_NUM_THREADS": "5"}, 8, 3),  # the key wins
    (["DATALOADER.NUM_WORKERS", "1"], {"OMP_NUM_THREADS": "5"}, 8, 5),  # then the environment's choice
])
def test_the_automatic_thread_count(monkeypatch, opts, env, cpus, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(runtime, "available_cpus", lambda: cpus)
    threads, why = runtime.choose_num_threads(load_config(None, opts))
    assert threads == expected and why


def test_the_choice_is_applied_and_logged(monkeypatch, caplog):
    import torch
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 3)
    caplog.set_level("INFO")
    try:
        assert runtime.configure_threads(load_config(None, ["DATALOADER.NUM_WORKERS", "1"])) == 2
        assert torch.get_num_threads() == 2
        assert "Using 2 intra-op thread(s) (automatic: 3 CPU(s) available / 1 process(es) - 1 loader worker(s)" \
            in caplog.text
    finally:
        torch.set_num_threads(before)
