"""Joining torchrun's process group: only with its environment, with the timeout of DIST_TIMEOUT."""
import datetime

import pytest

from segmentation.utils import comm


@pytest.fixture
def joined(monkeypatch):
    """Record init_process_group's arguments instead of joining a group."""
    calls = []
    monkeypatch.setattr(comm.dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setattr(comm, "is_distributed", lambda: False)
    monkeypatch.setattr(comm.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(comm.dist, "get_world_size", lambda: 2)
    return calls


def test_without_torchrun_nothing_is_joined(joined, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert comm.init_distributed("cpu", 60) == (0, 1, 0) and joined == []


@pytest.mark.parametrize("device, backend", [("cpu", "gloo"), ("cuda", "nccl")])
def test_the_group_waits_dist_timeout_minutes(joined, monkeypatch, device, backend):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(comm.torch.cuda, "set_device", lambda index: None)
    assert comm.init_distributed(device, 45) == (1, 2, 1)
    assert joined == [{"backend": backend, "timeout": datetime.timedelta(minutes=45)}]
    joined.clear()
    comm.init_distributed(device)  # no timeout given: torch's default
    assert joined == [{"backend": backend}]


class _Joined(Exception):
    pass


def test_the_trainer_and_test_net_join_with_dist_timeout(monkeypatch, tmp_path):
    import test_net

    from segmentation.config import load_config
    from segmentation.engine.trainer import Trainer
    from tests.conftest import ROOT
    seen = []

    def join(device_type, timeout_minutes=None):
        seen.append(timeout_minutes)
        raise _Joined  # what comes after is tested elsewhere
    monkeypatch.setattr(comm, "init_distributed", join)
    cfg_file = f"{ROOT}/configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml"
    opts = ["DIST_TIMEOUT", "45", "OUTPUT_DIR", str(tmp_path)]
    with pytest.raises(_Joined):
        Trainer(load_config(cfg_file, opts))
    with pytest.raises(_Joined):
        test_net.main(["--cfg", cfg_file, *opts])
    assert seen == [45, 45]


def _leave(rank):
    comm.shutdown()  # a barrier, then the group is destroyed
    return comm.is_distributed()


def test_shutdown_leaves_the_group_in_order():
    from tests.fixtures.distributed import in_two_processes
    assert in_two_processes(_leave) == {0: False, 1: False}
    comm.shutdown()  # without a group: nothing to do


def test_the_tools_leave_the_group_after_a_successful_run(monkeypatch):
    """tools/_common.run shuts the group down when main returns (not after an error: the others may be gone)."""
    import _common
    calls = []
    monkeypatch.setattr(comm, "shutdown", lambda: calls.append(1))
    assert _common.run(lambda argv: 0) == 0 and calls == [1]

    def fails(argv):
        raise FileNotFoundError("no such checkpoint")
    assert _common.run(fails) == 1 and calls == [1]
