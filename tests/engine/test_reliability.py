"""Nothing lost, nothing silent: signals to the process group with loader workers, a killed worker, NaN in a batch,
exploding updates, resumed runs with a changed config, a full disk, unfinished runs. Real faults run in subprocesses
with tiny configs."""
import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from segmentation.engine import Trainer
from segmentation.engine.trainer import CHECKPOINT_NAME, FINAL_NAME, TrainingInterrupted, read_run_record
from segmentation.utils import checkpoint as ckpt
from segmentation.utils.checkpoint import non_finite_tensors
from tests.conftest import ROOT

CFG = os.path.join(ROOT, "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml")
TINY = ["DATASET.SYNTHETIC.IMAGE_SIZE", "(64, 96)", "DATASET.CROP_SIZE", "(64, 96)", "DATASET.SYNTHETIC.TRAIN_SIZE",
        "8", "DATASET.SYNTHETIC.VAL_SIZE", "2", "TRAIN.IMS_PER_BATCH", "2", "PRINT_FREQ", "1",
        "DEBUG.TENSORBOARD", "False", "MODEL.DECODER.DECODER_CHANNELS", "32",
        "MODEL.PANOPTIC_DEEPLAB.INSTANCE.DECODER_CHANNELS", "16", "MODEL.PANOPTIC_DEEPLAB.INSTANCE.ASPP_CHANNELS",
        "32", "MODEL.PANOPTIC_DEEPLAB.INSTANCE.HEAD_CHANNELS", "16"]
# a constant learning rate after no warmup: the schedule does not depend on TRAIN.MAX_ITER
CONSTANT_LR = ["SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.STEPS", "(100000,)",
               "SOLVER.WARMUP_ITERS", "0"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")
LOSS_LINE = re.compile(r"iter (\d+)/\d+  (.*?)  lr (\S+)")


@pytest.fixture
def seg_log(caplog):
    """caplog receiving the 'segmentation' logger (which does not propagate once a tool has set it up)."""
    logger = logging.getLogger("segmentation")
    attach = not logger.propagate  # else caplog's root handler sees the records already
    if attach:
        logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield caplog
    if attach:
        logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def _train_cmd(out, *opts):
    return [sys.executable, "tools/train_net.py", "--cfg", CFG, *TINY, "OUTPUT_DIR", str(out), *opts]


def _losses(log_text):
    """{iteration: 'semantic_loss ... loss ...  lr ...'} of a log."""
    return {int(m.group(1)): (m.group(2), m.group(3)) for m in LOSS_LINE.finditer(log_text)}


def _wait_for(path, text, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and text in open(path).read():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended ({proc.returncode}) before '{text}': {proc.stdout.read()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"'{text}' never appeared in {path}")


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_workers_saves_and_resumes_exactly(tmp_path):
    """`timeout -s TERM`, SLURM and Kubernetes signal the whole process group: the loader workers ignore it, the
    trainer saves the last completed iteration, exits 143, and the resumed run logs the uninterrupted losses."""
    workers = ["DATALOADER.NUM_WORKERS", "2", *CONSTANT_LR]
    full = subprocess.run(_train_cmd(tmp_path / "full", *workers, "TRAIN.MAX_ITER", "10"), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train_cmd(cut, *workers, "TRAIN.MAX_ITER", "100000"), cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for(cut / "log.txt", "iter 2/", proc)
        os.killpg(proc.pid, signal.SIGTERM)  # the trainer and its two workers
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, output[-3000:]
    assert "SIGTERM received" in output and "Traceback" not in output
    saved = torch.load(cut / CHECKPOINT_NAME, weights_only=True)["iteration"]
    assert 2 <= saved < 10
    assert not os.path.exists(cut / FINAL_NAME)
    record = read_run_record(str(cut))
    assert record["status"] == "interrupted" and record["iteration"] == saved
    # resumed with the uninterrupted run's length (a changed TRAIN.MAX_ITER: the current config applies)
    r = subprocess.run(_train_cmd(cut, *workers, "TRAIN.MAX_ITER", "10", "TRAIN.RESUME", "True"), cwd=ROOT,
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "TRAIN.MAX_ITER: 100000 -> 10" in (cut / "log.txt").read_text()
    expected = {k: v for k, v in _losses((tmp_path / "full" / "log.txt").read_text()).items() if k > saved}
    resumed = _losses(r.stdout)
    assert expected and resumed == expected  # bit-identical loss lines and learning rates
    assert read_run_record(str(cut))["status"] == "finished" and os.path.exists(cut / FINAL_NAME)


@pytest.mark.slow
def test_a_killed_loader_worker_saves_the_last_iteration_and_fails(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(out, "DATALOADER.NUM_WORKERS", "2", "TRAIN.MAX_ITER", "100000"), cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait_for(out / "log.txt", "iter 2/", proc)
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children, "no loader worker found"
        os.kill(int(children[0]), signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, stdout[-2000:] + stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: DataLoader worker") and "Traceback" not in stderr
    assert "killed by signal" in lines[0] or "exited unexpectedly" in lines[0]  # found by the handler or the queue
    saved = torch.load(out / CHECKPOINT_NAME, weights_only=True)["iteration"]
    assert saved >= 2 and not os.path.exists(out / FINAL_NAME)
    record = read_run_record(str(out))
    assert record["status"] == "failed" and record["iteration"] == saved
    assert "Traceback" in (out / "log.txt").read_text()  # the traceback went to the log file


def _fault_run(out, nan_position, *opts):
    return subprocess.run([sys.executable, "tests/engine/_fault_run.py", str(out), str(nan_position), *TINY,
                           "DATALOADER.NUM_WORKERS", "0", "TRAIN.KEEP_LAST", "10", *CONSTANT_LR, *opts], cwd=ROOT,
                          env=ENV,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_nan_pixel_stops_training_and_saves_the_state_before_the_step_bit_for_bit(tmp_path):
    """One NaN pixel in the first sample of iteration 3: the error names the input and the file; the checkpoint
    saved is the uninterrupted run's iteration-2 checkpoint (BatchNorm statistics, RNG, optimizer) bit for bit."""
    reference = _fault_run(tmp_path / "ref", -1, "TRAIN.MAX_ITER", "3", "CKPT_FREQ", "1")
    assert reference.returncode == 0, reference.stderr[-3000:]
    r = _fault_run(tmp_path / "nan", 4, "TRAIN.MAX_ITER", "6")  # batch 2: positions 4 and 5 make iteration 3
    assert r.returncode == 1
    assert "error: Non-finite values at iteration 3: input images (synthetic_train_" in r.stderr
    assert "iteration 2" in r.stderr and not os.path.exists(tmp_path / "nan" / FINAL_NAME)
    expected = torch.load(tmp_path / "ref" / "checkpoint_0000002.pth", weights_only=True)
    saved = torch.load(tmp_path / "nan" / CHECKPOINT_NAME, weights_only=True)
    assert saved["iteration"] == 2
    for key in ("model", "optimizer", "scaler", "rng"):
        assert _equal(saved[key], expected[key]), key
    assert read_run_record(str(tmp_path / "nan"))["status"] == "failed"


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_an_exploding_update_never_replaces_a_finite_checkpoint(synthetic_cfg, tmp_path):
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.SOLVER.OPTIMIZER, synthetic_cfg.SOLVER.BASE_LR, synthetic_cfg.SOLVER.WARMUP_ITERS = "sgd", 1e8, 0
    synthetic_cfg.CKPT_FREQ, synthetic_cfg.TRAIN.KEEP_LAST, synthetic_cfg.TRAIN.MAX_ITER = 2, 0, 50
    with pytest.raises(FloatingPointError, match="Non-finite values at iteration"):
        Trainer(synthetic_cfg).train()
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert non_finite_tensors({"model": state["model"], "optimizer": state["optimizer"]}) == []
    assert not os.path.exists(tmp_path / FINAL_NAME)


def test_a_state_with_non_finite_tensors_is_not_saved(synthetic_cfg, tmp_path):
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    trainer = Trainer(synthetic_cfg)
    assert trainer.save(1)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    with torch.no_grad():
        next(trainer.net.parameters())[0] = float("nan")
    assert not trainer.save(2)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before


def test_non_finite_batchnorm_statistics_are_named(synthetic_cfg, tmp_path):
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    trainer = Trainer(synthetic_cfg)
    buffer_name, buffer = next((n, b) for n, b in trainer.net.named_buffers() if "running_var" in n)
    buffer[0] = float("inf")
    with pytest.raises(FloatingPointError, match=re.escape(f"BatchNorm buffers ({buffer_name}")):
        trainer.train()


def _resumable_run(synthetic_cfg, tmp_path, **changes):
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.TRAIN.MAX_ITER, synthetic_cfg.PRINT_FREQ, synthetic_cfg.SOLVER.WARMUP_ITERS = 4, 1, 0
    Trainer(synthetic_cfg).train()
    synthetic_cfg.TRAIN.RESUME = True
    for key, value in changes.items():
        node, *path = key.split(".")
        target = synthetic_cfg[node]
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return Trainer(synthetic_cfg)


def test_resume_follows_the_current_schedule_and_logs_the_differences(synthetic_cfg, tmp_path, seg_log):
    trainer = _resumable_run(synthetic_cfg, tmp_path, **{"TRAIN.MAX_ITER": 8, "SOLVER.BASE_LR": 0.002})
    assert trainer.start_iter == 4
    # poly schedule of the current config at iteration 4 of 8: base_lr * (1 - 4/8) ** 0.9
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.002 * 0.5 ** 0.9)
    assert "TRAIN.MAX_ITER: 4 -> 8" in seg_log.text and "SOLVER.BASE_LR: 0.001 -> 0.002" in seg_log.text
    trainer.train()
    assert [it for it, _ in trainer.history] == [5, 6, 7, 8]


def test_resume_refuses_another_optimizer(synthetic_cfg, tmp_path):
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER is 'sgd' but the checkpoint .* 'adam'"):
        _resumable_run(synthetic_cfg, tmp_path, **{"SOLVER.OPTIMIZER": "sgd"})


def _failing_save(state, f):
    f.write(b"partial")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_gives_one_error_keeps_the_previous_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    path = str(tmp_path / CHECKPOINT_NAME)
    ckpt.save_checkpoint({"a": torch.ones(3)}, path)
    before = open(path, "rb").read()
    monkeypatch.setattr(ckpt.torch, "save", _failing_save)
    with pytest.raises(ckpt.CheckpointWriteError) as info:
        ckpt.save_checkpoint({"a": torch.zeros(3)}, path)
    assert info.value.errno == errno.ENOSPC
    assert path in str(info.value) and "No space left on device (ENOSPC)" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # one error, not a chain
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == [CHECKPOINT_NAME]


def test_a_full_disk_during_training_stops_it_with_that_error(synthetic_cfg, tmp_path, monkeypatch):
    synthetic_cfg.OUTPUT_DIR, synthetic_cfg.CKPT_FREQ = str(tmp_path), 2
    trainer = Trainer(synthetic_cfg)
    monkeypatch.setattr(ckpt.torch, "save", _failing_save)
    with pytest.raises(ckpt.CheckpointWriteError, match="No space left"):
        trainer.train()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert read_run_record(str(tmp_path))["status"] == "failed"


def test_saves_are_fsynced_and_orphaned_temporaries_removed(synthetic_cfg, tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(ckpt.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    ckpt.save_checkpoint({"a": torch.ones(1)}, str(tmp_path / "x.pth"))
    assert len(synced) == 2  # the file, then its folder after the rename
    for name in ("checkpoint_0000004.pth.tmp", "checkpoint.pth.tar.tmp", "final_state.pth.tmp"):
        (tmp_path / name).write_bytes(b"orphan")
    (tmp_path / "notes.tmp").write_text("not ours")
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    Trainer(synthetic_cfg)
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".tmp")) == ["notes.tmp"]


def test_an_interrupted_run_writes_no_final_state_and_records_how_it_ended(synthetic_cfg, tmp_path):
    class StopAfterTwo(Trainer):
        def train_step(self, loader):
            out = super().train_step(loader)
            if self.scheduler.last_epoch + 1 == 2:
                self._stop_signal = "SIGINT"
            return out
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    with pytest.raises(TrainingInterrupted) as info:
        StopAfterTwo(synthetic_cfg).train()
    assert info.value.exit_code == 130 and info.value.iteration == 2
    assert not os.path.exists(tmp_path / FINAL_NAME)
    record = json.loads((tmp_path / "run.json").read_text())
    assert (record["status"], record["iteration"], record["max_iter"]) == ("interrupted", 2, 4)
    Trainer(synthetic_cfg).train()
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "finished"
    assert os.path.exists(tmp_path / FINAL_NAME)


def test_the_logged_learning_rate_is_the_one_the_step_used(synthetic_cfg, tmp_path, seg_log):
    synthetic_cfg.OUTPUT_DIR, synthetic_cfg.PRINT_FREQ, synthetic_cfg.SOLVER.WARMUP_ITERS = str(tmp_path), 1, 0
    Trainer(synthetic_cfg).train()
    lrs = [float(m.group(3)) for m in LOSS_LINE.finditer(seg_log.text)]
    # poly over 4 iterations: step i uses base_lr * (1 - i/4) ** 0.9, so the last one is still above 0
    assert lrs == pytest.approx([1e-3 * (1 - i / 4) ** 0.9 for i in range(4)], rel=1e-2)
