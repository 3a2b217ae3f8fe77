"""The training loop: one screen, single process (distributed training is not available yet)."""
import json
import logging
import os
import random
import time

import numpy as np
import torch

from ..data import build_train_loader
from ..model import build_model
from ..model.output_math import OutputMath
from ..solver import build_lr_scheduler, build_optimizer, clip_gradients
from ..utils.checkpoint import load_checkpoint, save_checkpoint
from ..utils.logger import format_seconds

logger = logging.getLogger("segmentation")

CHECKPOINT_NAME = "checkpoint.pth.tar"
FINAL_NAME = "final_state.pth"


def resolve_device(cfg):
    if cfg.DEVICE == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.DEVICE == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE is 'cuda' but no CUDA device is available; set DEVICE auto or cpu.")
    if cfg.DEVICE not in ("cpu", "cuda"):
        raise ValueError(f"Unknown DEVICE '{cfg.DEVICE}'; valid: auto, cpu, cuda.")
    return torch.device(cfg.DEVICE)


def seed_everything(seed):
    if seed < 0:
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(batch, device):
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def logged_losses(out):
    """Dict of the unweighted loss components and the total ``loss``, from an OM instance or an output dict."""
    if isinstance(out, OutputMath):
        return out.logged_losses()
    return {k: v for k, v in out.items() if k.endswith("loss")}


def save_run_record(cfg, output_dir):
    """The resolved config (YAML) and the package versions, for reproducibility."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    import platform
    import subprocess
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    record = {"git_revision": rev, "python": platform.python_version(), "torch": torch.__version__,
              "numpy": np.__version__}
    with open(os.path.join(output_dir, "run.json"), "w") as f:
        json.dump(record, f, indent=2)


class Trainer:
    """Builds model, data, optimizer and scheduler from ``cfg`` and runs ``TRAIN.MAX_ITER`` iterations."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.output_dir = cfg.OUTPUT_DIR
        seed_everything(cfg.SEED)
        self.device = resolve_device(cfg)
        if cfg.OM.NAME and not cfg.DATASET.PAN_ONLY and "cpu-tensors" not in cfg.OM.MIXINS:
            logger.warning("The OM computes every target itself, but DATASET.PAN_ONLY is False: the loaders also "
                           "compute CPU targets that nothing reads. Set DATASET.PAN_ONLY True to skip them.")
        self.model = build_model(cfg).to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.start_iter = 0
        self.last_logged = {}  # the loss averages of the last PRINT_FREQ window
        if cfg.TRAIN.RESUME:
            self.resume()

    @property
    def checkpoint_path(self):
        return os.path.join(self.output_dir, CHECKPOINT_NAME)

    def state_dict(self, iteration):
        return {"iteration": iteration, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def resume(self):
        if not os.path.isfile(self.checkpoint_path):
            logger.info("TRAIN.RESUME: no checkpoint at %s, starting from scratch.", self.checkpoint_path)
            return
        state = load_checkpoint(self.checkpoint_path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_iter = state["iteration"]
        logger.info("Resumed from %s at iteration %d.", self.checkpoint_path, self.start_iter)

    def train(self):
        cfg = self.cfg
        save_run_record(cfg, self.output_dir)
        max_iter = cfg.TRAIN.MAX_ITER
        if self.start_iter >= max_iter:
            logger.info("Already trained for %d iterations.", self.start_iter)
            self.save_final()
            return
        loader = iter(build_train_loader(cfg))
        self.model.train()
        logger.info("Training %s on %s for %d iterations (batch %d) on %s.", cfg.MODEL.META_ARCHITECTURE,
                    cfg.DATASET.DATASET, max_iter, cfg.TRAIN.IMS_PER_BATCH, self.device)
        t_start, data_time, step_time, n = time.perf_counter(), 0.0, 0.0, 0
        sums = {}
        it = self.start_iter
        try:
            for it in range(self.start_iter, max_iter):
                t0 = time.perf_counter()
                batch = to_device(next(loader), self.device)
                t1 = time.perf_counter()
                out = self.model(batch["image"], batch)
                logged = logged_losses(out)
                loss = logged["loss"]
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_gradients(cfg, self.model.parameters())
                self.optimizer.step()
                self.scheduler.step()
                t2 = time.perf_counter()
                data_time += t1 - t0
                step_time += t2 - t1
                n += 1
                for k, v in logged.items():
                    sums[k] = sums.get(k, 0.0) + v.detach()
                done = it + 1
                if done % cfg.PRINT_FREQ == 0 or done == max_iter:
                    avg = {k: float(v) / n for k, v in sums.items()}
                    self.last_logged = avg
                    if not np.isfinite(avg["loss"]):
                        bad = [k for k, v in avg.items() if not np.isfinite(v)]
                        raise FloatingPointError(f"Non-finite loss at iteration {done}: {', '.join(bad)}.")
                    elapsed = time.perf_counter() - t_start
                    eta = elapsed / (done - self.start_iter) * (max_iter - done)
                    parts = "  ".join(f"{k} {v:.4f}" for k, v in avg.items())
                    logger.info("iter %d/%d  %s  lr %.2e  data %.3fs  step %.3fs  eta %s", done, max_iter, parts,
                                self.optimizer.param_groups[0]["lr"], data_time / n, step_time / n,
                                format_seconds(eta))
                    sums, data_time, step_time, n = {}, 0.0, 0.0, 0
                if cfg.CKPT_FREQ > 0 and done % cfg.CKPT_FREQ == 0 and done < max_iter:
                    save_checkpoint(self.state_dict(done), self.checkpoint_path)
            save_checkpoint(self.state_dict(max_iter), self.checkpoint_path)
        finally:
            self.save_final()
        logger.info("Training done in %s.", format_seconds(time.perf_counter() - t_start))

    def save_final(self):
        save_checkpoint({"model": self.model.state_dict()}, os.path.join(self.output_dir, FINAL_NAME))
