"""Training at scale: exact resume, signals, checkpoint retention, mixed precision, accumulation, TensorBoard,
two gloo processes against one, and the Table 1 benchmark."""
import glob
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from segmentation.engine import Trainer
from segmentation.engine.trainer import CHECKPOINT_NAME, FINAL_NAME, TrainingInterrupted
from tests.conftest import ROOT

CFG = os.path.join(ROOT, "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml")


class StopAfter(Trainer):
    """Behaves as if SIGTERM arrived during iteration ``stop``."""

    stop = 3

    def train_step(self, loader):
        out = super().train_step(loader)
        if self.scheduler.last_epoch + 1 == self.stop:
            self._stop_signal = "SIGTERM"
        return out


@pytest.mark.parametrize("om", [False, True])
def test_resumed_run_reproduces_the_uninterrupted_losses(synthetic_cfg, tmp_path, om):
    synthetic_cfg.PRINT_FREQ = 1
    synthetic_cfg.TRAIN.MAX_ITER = 6
    synthetic_cfg.DATALOADER.NUM_WORKERS = 1
    if om:
        synthetic_cfg.OM.NAME, synthetic_cfg.DATASET.PAN_ONLY = "panoptic-deeplab", True
    synthetic_cfg.OUTPUT_DIR = str(tmp_path / "full")
    full = Trainer(synthetic_cfg)
    full.train()
    synthetic_cfg.OUTPUT_DIR = str(tmp_path / "cut")
    first = StopAfter(synthetic_cfg)
    before = set(multiprocessing.active_children())  # other tests' processes
    with pytest.raises(TrainingInterrupted):
        first.train()
    # the workers end with the training loop, not when the exception (which holds its frame) is freed
    assert not [child for child in set(multiprocessing.active_children()) - before if child.daemon]
    assert torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)["iteration"] == 3
    synthetic_cfg.TRAIN.RESUME = True
    second = Trainer(synthetic_cfg)
    assert second.start_iter == 3
    second.train()
    assert [h for h in full.history if h[0] > 3] == second.history  # bit-identical losses
    a = torch.load(tmp_path / "full" / FINAL_NAME, weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / FINAL_NAME, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_keep_last_checkpoints(synthetic_cfg, tmp_path):
    synthetic_cfg.OUTPUT_DIR, synthetic_cfg.CKPT_FREQ, synthetic_cfg.TRAIN.KEEP_LAST = str(tmp_path), 1, 2
    synthetic_cfg.TRAIN.MAX_ITER = 5
    Trainer(synthetic_cfg).train()
    numbered = sorted(f for f in os.listdir(tmp_path) if f.startswith("checkpoint_"))
    assert numbered == ["checkpoint_0000004.pth", "checkpoint_0000005.pth"]
    assert not any(f.endswith(".tmp") for f in os.listdir(tmp_path))


def test_sigterm_saves_and_exits_with_143(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "tools/train_net.py", "--cfg", CFG, "OUTPUT_DIR", str(out), "TRAIN.MAX_ITER", "100000",
           "PRINT_FREQ", "1", "DATASET.SYNTHETIC.IMAGE_SIZE", "(64, 96)", "DATASET.CROP_SIZE", "(64, 96)",
           "TRAIN.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "DEBUG.TENSORBOARD", "False"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            log = out / "log.txt"
            if log.exists() and "iter 2/" in log.read_text():
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, output[-2000:]  # 128 + SIGTERM: interrupted, not finished
    assert "SIGTERM received" in output
    state = torch.load(out / CHECKPOINT_NAME, weights_only=True)
    assert 2 <= state["iteration"] < 100000 and not os.path.isfile(out / FINAL_NAME)


@pytest.mark.parametrize("om", [False, True])
def test_bf16_mixed_precision_on_cpu(synthetic_cfg, tmp_path, om):
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.SOLVER.AMP.ENABLED = True
    if om:
        synthetic_cfg.OM.NAME, synthetic_cfg.DATASET.PAN_ONLY = "panoptic-deeplab", True
    trainer = Trainer(synthetic_cfg)
    assert trainer.amp_dtype == torch.bfloat16
    trainer.train()
    assert all(torch.isfinite(torch.tensor(v)) for _, h in trainer.history for v in h.values())
    out, _ = trainer._forward(trainer.last_batch)
    if om:
        assert out.center_pred().dtype == torch.float32 and out.loss().dtype == torch.float32
    else:
        assert out["loss"].dtype == torch.float32


def test_gradient_accumulation_consumes_the_global_batch(synthetic_cfg, tmp_path):
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.TRAIN.ACCUMULATE_STEPS = 2  # global batch 2 = 2 micro-batches of 1
    trainer = Trainer(synthetic_cfg)
    trainer.train()
    assert trainer.last_batch["image"].shape[0] == 1
    synthetic_cfg.TRAIN.ACCUMULATE_STEPS = 3
    with pytest.raises(ValueError, match="ACCUMULATE_STEPS"):
        Trainer(synthetic_cfg)


def test_tensorboard_scalars_and_om_images(synthetic_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.DEBUG.DEBUG_FREQ = 2
    Trainer(synthetic_cfg).train()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/semantic_loss", "train/lr"} <= set(acc.Tags()["scalars"])
    assert "train/om_variables" in acc.Tags()["images"]


def _torchrun_or_python(nproc, args, port):
    if nproc == 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
            str(port), *args]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    """Same global batch (two copies of one deterministic sample): 2 DDP processes make the parameter update of 1
    process, and distributed evaluation gathers the same metrics.

    Float32 noise floor: even in one process, the gradients of batch [x] and batch [x, x] differ by ~0.7% here
    (cancellation in the backward of ~50 BatchNorm layers), ~5% after two steps. A wrong gradient scale (sum instead
    of mean over processes) differs by ~100%.
    """
    from segmentation.config import load_config
    from segmentation.engine.trainer import seed_everything
    from segmentation.model import build_model
    opts = ["DATASET.SYNTHETIC.IMAGE_SIZE", "(64, 96)", "DATASET.CROP_SIZE", "(64, 96)", "DATASET.SYNTHETIC.TRAIN_SIZE",
            "1", "DATASET.SYNTHETIC.VAL_SIZE", "4", "DATASET.MIN_SCALE", "1.0", "DATASET.MAX_SCALE", "1.0",
            "DATASET.MIRROR", "False", "MODEL.DECODER.ASPP_DROPOUT", "0.0", "TRAIN.IMS_PER_BATCH", "2",
            "TRAIN.MAX_ITER", "2", "DATALOADER.NUM_WORKERS", "0", "DEBUG.TENSORBOARD", "False",
            "SOLVER.OPTIMIZER", "sgd", "SOLVER.BASE_LR", "0.01", "LOSS.SEMANTIC.NAME", "cross_entropy"]
    states, metrics = {}, {}
    for nproc, port in ((1, 0), (2, 29611)):
        out = str(tmp_path / f"p{nproc}")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        for tool in ("tools/train_net.py", "tools/test_net.py"):
            args = [tool, "--cfg", CFG, *opts, "OUTPUT_DIR", out]
            r = subprocess.run(_torchrun_or_python(nproc, args, port + len(tool)), cwd=ROOT, capture_output=True,
                               text=True, timeout=600, env=env)
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        states[nproc] = torch.load(os.path.join(out, FINAL_NAME), weights_only=True)["model"]
        metrics[nproc] = json.load(open(glob.glob(os.path.join(out, "eval", "*", "metrics.json"))[0]))
    cfg = load_config(CFG, opts)
    seed_everything(cfg.SEED)
    init = build_model(cfg).state_dict()
    keys = [k for k in init if init[k].is_floating_point() and "running" not in k]
    update = sum(float((states[1][k] - init[k]).norm() ** 2) for k in keys) ** 0.5
    gap = sum(float((states[1][k] - states[2][k]).norm() ** 2) for k in keys) ** 0.5
    assert update > 0 and gap / update < 0.15
    # the same checkpoint evaluated by 2 processes (each on its shard) gives exactly the 1-process metrics
    out = str(tmp_path / "eval2")
    args = ["tools/test_net.py", "--cfg", CFG, *opts, "OUTPUT_DIR", out, "TEST.MODEL_FILE",
            os.path.join(tmp_path, "p1", FINAL_NAME)]
    r = subprocess.run(_torchrun_or_python(2, args, 29690), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    gathered = json.load(open(glob.glob(os.path.join(out, "eval", "*", "metrics.json"))[0]))
    for key in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "mIoU"):
        assert gathered[key] == pytest.approx(metrics[1][key], abs=1e-9), key


@pytest.mark.slow
def test_table1_benchmark_runs_the_four_scenarios(tmp_path):
    out = tmp_path / "table1.json"
    r = subprocess.run([sys.executable, "tools/benchmark.py", "--cfg", CFG, "--iters", "2", "--warmup", "1",
                        "--rounds", "2", "--json", str(out), "DATASET.SYNTHETIC.IMAGE_SIZE", "(64, 96)",
                        "DATASET.CROP_SIZE", "(64, 96)", "TRAIN.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Ratio to (i), median (range) over 2 round(s)" in r.stdout and "(iv)" in r.stdout
    assert "round 2/2 (ii)" in r.stdout.splitlines()[4]  # the second round starts with (ii)
    data = json.loads(out.read_text())
    assert [set(r) for r in data["rounds"]] == [{"i", "ii", "iii", "iv"}] * 2
    assert all(len(v["times"]["batch"]) == 2 and v["peak_memory_gb"] > 0 for r in data["rounds"] for v in r.values())
    assert data["summary"]["i"]["ratio"]["batch"] == [1.0, 1.0, 1.0]


def test_table1_benchmark_compiled_column(tmp_path):
    """--compile runs the chosen scenarios compiled too (here with the tracing-only backend: no C++ compilation)."""
    out = tmp_path / "table1.json"
    r = subprocess.run([sys.executable, "tools/benchmark.py", "--cfg", CFG, "--iters", "1", "--warmup", "1",
                        "--rounds", "1", "--compile", "--scenarios", "iii", "--json", str(out),
                        "DATASET.SYNTHETIC.IMAGE_SIZE",
                        "(64, 96)", "DATASET.CROP_SIZE", "(64, 96)", "TRAIN.IMS_PER_BATCH", "2",
                        "DATALOADER.NUM_WORKERS", "0", "MODEL.COMPILE_BACKEND", "aot_eager"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Compiled batch time (s) | Compiled / eager batch |" in r.stdout and "(iii+compile)" in r.stdout
    assert "(ii)" not in r.stdout
    runs = json.loads(out.read_text())["rounds"][0]
    assert runs["iii+compile"]["compiled"] and not runs["iii"]["compiled"]


def test_peak_memory_counts_the_loader_workers():
    """A child holding 200 MB of its own pages raises the sampled peak by about that much."""
    import time

    from benchmark import PeakMemory
    with PeakMemory(period=0.01) as alone:
        time.sleep(0.2)
    code = "import time, numpy as np; a = np.ones(200 * 2**20 // 8); time.sleep(1.5)"
    with PeakMemory(period=0.01) as with_child:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert with_child.peak_gb - alone.peak_gb > 0.15


def test_keep_freed_memory_applies_on_linux_glibc():
    import sys

    from segmentation.utils.memory import keep_freed_memory
    applied = keep_freed_memory()
    if sys.platform.startswith("linux"):
        import platform
        assert applied == (platform.libc_ver()[0] == "glibc")
