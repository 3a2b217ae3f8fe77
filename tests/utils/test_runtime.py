"""Thread selection: the CPUs a process may use (affinity, cgroup quota) that other processes leave idle, shared
among the local processes; explicit choices win."""
import os
import subprocess
import sys
import time

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


@pytest.mark.parametrize("opts, env, cpus, busy, expected", [
    ([], {}, 8, 0.0, 8),  # an idle machine: every CPU (the loader workers sleep most of the step)
    (["DATALOADER.NUM_WORKERS", "1"], {}, 2, 0.0, 2),
    ([], {}, 2, 1.6, 1),  # another process keeps 1.6 of 2 CPUs busy: the rest, rounded
    ([], {}, 8, 2.4, 6),
    ([], {}, 2, 2.0, 1),  # never below 1
    ([], {"LOCAL_WORLD_SIZE": "2"}, 8, 5.0, 4),  # 8 / 2 processes: starting siblings are not counted as load
    (["NUM_THREADS", "3"], {"OMP_NUM_THREADS": "5"}, 8, 0.0, 3),  # the key wins
    ([], {"OMP_NUM_THREADS": "5"}, 8, 0.0, 5),  # then the environment's choice
])
def test_the_automatic_thread_count(monkeypatch, opts, env, cpus, busy, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(runtime, "available_cpus", lambda: cpus)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    threads, why = runtime.choose_num_threads(load_config(None, opts), busy=busy)
    assert threads == expected and why


def test_a_cgroup_quota_caps_the_threads_whatever_the_idle_cpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(runtime, "available_cpus", lambda: 8)  # quota 8 of 64 CPUs
    assert runtime.choose_num_threads(load_config(None, []), busy=40.0)[0] == 8  # 24 idle CPUs
    assert runtime.choose_num_threads(load_config(None, []), busy=59.0)[0] == 5


def _stat(times):
    lines = ["cpu  " + " ".join(["0"] * 10)]
    lines += [f"cpu{k} " + " ".join(str(v) for v in fields) for k, fields in times.items()]
    return "\n".join(lines + ["intr 0", "ctxt 0"]) + "\n"


def test_busy_cpus_are_read_from_proc_stat_for_the_affinity_cpus_only(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    #            user nice system idle iowait irq softirq steal guest guest_nice
    first = {0: [100, 0, 0, 100, 0, 0, 0, 0, 0, 0], 1: [0, 0, 0, 200, 0, 0, 0, 0, 0, 0],
             2: [0, 0, 0, 200, 0, 0, 0, 0, 0, 0]}
    # over the sample: cpu0 fully busy (user 60 + system 40), cpu1 a quarter busy (iowait counts as idle), cpu2 busy
    # but outside the affinity
    second = {0: [160, 0, 40, 100, 0, 0, 0, 0, 0, 0], 1: [20, 0, 0, 250, 10, 0, 0, 0, 0, 0],
              2: [0, 0, 0, 200, 0, 100, 0, 0, 0, 0]}
    texts = iter([_stat(first), _stat(second)])
    stat.write_text(next(texts))

    def sleep(seconds):  # the other processes' work happens while the sampler sleeps
        stat.write_text(next(texts))

    monkeypatch.setattr(runtime.time, "sleep", sleep)
    monkeypatch.setattr(runtime.time, "process_time", lambda: 7.0)  # this process used no CPU meanwhile
    assert runtime.busy_cpus_of_others(stat_path=str(stat), cpus={0, 1}) == pytest.approx(1.25)
    assert runtime.busy_cpus_of_others(stat_path=str(tmp_path / "missing"), cpus={0}) == 0.0


def test_busy_cpus_count_a_real_busy_process(monkeypatch):
    """Two processes spinning on this machine's CPUs are measured as (nearly) two busy CPUs, and leave 1 thread on 2
    CPUs: the load of another training job is what the choice reacts to."""
    code = "import time\nt = time.time()\nwhile time.time() - t < 20: pass\n"
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    try:
        time.sleep(0.5)
        busy = runtime.busy_cpus_of_others(sample_seconds=0.5)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert busy > 1.5
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    # at least one CPU is left to the spinners (on 2 CPUs: 1 thread)
    assert runtime.choose_num_threads(load_config(None, []), busy=busy)[0] <= max(1, len(os.sched_getaffinity(0)) - 1)


def test_the_choice_is_applied_and_logged(monkeypatch, caplog):
    import torch
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 3)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(runtime, "busy_cpus_of_others", lambda: 0.8)
    caplog.set_level("INFO")
    try:
        assert runtime.configure_threads(load_config(None, ["DATALOADER.NUM_WORKERS", "1"])) == 2
        assert torch.get_num_threads() == 2
        assert "Using 2 intra-op thread(s) (automatic: 3 CPU(s) available, 0.8 kept busy by other processes" \
            in caplog.text
    finally:
        torch.set_num_threads(before)


def _draws():
    import random

    import numpy as np
    import torch
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import torch
    runtime.seed_everything(3)
    torch.save({"rng": runtime.rng_states()}, tmp_path / "s.pth")
    first = _draws()
    runtime.set_rng_states(torch.load(tmp_path / "s.pth", weights_only=True)["rng"])
    assert _draws() == first


@pytest.mark.parametrize("saved", ["device", "list of 8", "list of 1", "none"])
def test_the_cuda_state_goes_to_this_process_device(monkeypatch, saved):
    """The CUDA state of the saving process's device is restored on the resuming process's device, whatever GPUs
    each saw; older checkpoints held a list of every visible device's state (CUDA simulated)."""
    import torch
    own = torch.tensor([7], dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: own)
    state = runtime.rng_states()
    assert state["cuda"] is own
    state["cuda"] = {"device": own, "list of 8": [own] + [torch.tensor([k], dtype=torch.uint8) for k in range(7)],
                     "list of 1": [own], "none": None}[saved]
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s: restored.append(int(s[0])))
    runtime.set_rng_states(state)
    assert restored == ([] if saved == "none" else [7])


def test_a_run_that_never_used_cuda_records_no_cuda_state(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert "cuda" not in runtime.rng_states()  # recording it would start CUDA in a CPU run
