"""The training loop: single process by default, DistributedDataParallel under torchrun.

Features: mixed precision for the network (OM targets, losses and decoding stay float32), gradient accumulation and
clipping, atomic checkpoints keeping the last K, exact resume (model, optimizer, scheduler, grad scaler, iteration,
RNG states and the data stream), SIGINT/SIGTERM save and exit cleanly, a non-finite loss stops training after
saving the last good state, progress lines with ETA, TensorBoard scalars and OM-variable image grids.
"""
import contextlib
import json
import logging
import os
import random
import signal
import time

import numpy as np
import torch
import torch.nn as nn

from ..data import build_train_loader, get_metadata
from ..model import build_model
from ..model.output_math import OutputMath
from ..solver import build_lr_scheduler, build_optimizer, clip_gradients
from ..utils import comm
from ..utils.checkpoint import load_checkpoint, save_checkpoint
from ..utils.logger import format_seconds
from ..utils.memory import keep_freed_memory

logger = logging.getLogger("segmentation")

CHECKPOINT_NAME = "checkpoint.pth.tar"
FINAL_NAME = "final_state.pth"


def configure_host_memory(cfg, device):
    """On CPU with CPU_KEEP_FREED_MEMORY, keep freed host memory for reuse (``utils.memory.keep_freed_memory``)."""
    if device.type == "cpu" and cfg.CPU_KEEP_FREED_MEMORY:
        keep_freed_memory()


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


def amp_dtype(cfg, device):
    """The autocast dtype of SOLVER.AMP, or None when mixed precision is off."""
    amp = cfg.SOLVER.AMP
    if not amp.ENABLED:
        return None
    name = amp.DTYPE if amp.DTYPE != "auto" else ("float16" if device.type == "cuda" else "bfloat16")
    if name not in ("float16", "bfloat16"):
        raise ValueError(f"SOLVER.AMP.DTYPE must be auto, float16 or bfloat16, got '{amp.DTYPE}'.")
    return getattr(torch, name)


def rng_states():
    """RNG states in types that ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     cached), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_run_record(cfg, output_dir):
    """The resolved config (YAML), the git revision and the package versions, for reproducibility."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    import importlib.metadata
    import platform
    import subprocess
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    packages = {}
    for name in ("torch", "numpy", "opencv-python-headless", "pillow", "yacs", "cityscapesscripts", "pycocotools"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    record = {"git_revision": rev, "python": platform.python_version(), "packages": packages,
              "world_size": comm.get_world_size()}
    with open(os.path.join(output_dir, "run.json"), "w") as f:
        json.dump(record, f, indent=2)


class Trainer:
    """Builds model, data, optimizer and scheduler from ``cfg`` and runs ``TRAIN.MAX_ITER`` iterations."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.output_dir = cfg.OUTPUT_DIR
        self.device = resolve_device(cfg)
        self.rank, self.world_size, local_rank = comm.init_distributed(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", local_rank)
        configure_host_memory(cfg, self.device)
        seed_everything(cfg.SEED)
        if cfg.OM.NAME and not cfg.DATASET.PAN_ONLY and "cpu-tensors" not in cfg.OM.MIXINS:
            logger.warning("The OM computes every target itself, but DATASET.PAN_ONLY is False: the loaders also "
                           "compute CPU targets that nothing reads. Set DATASET.PAN_ONLY True to skip them.")
        model = build_model(cfg)
        if self.world_size > 1:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                logger.warning("SyncBatchNorm needs CUDA: each of the %d CPU processes normalises its own batch.",
                               self.world_size)
        self.model = model.to(self.device)
        self.net = self.model  # the module without the DDP wrapper
        if self.world_size > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = build_optimizer(cfg, self.net)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.amp_dtype = amp_dtype(cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.accumulate = cfg.TRAIN.ACCUMULATE_STEPS
        if cfg.TRAIN.IMS_PER_BATCH % (self.world_size * self.accumulate):
            raise ValueError(f"TRAIN.IMS_PER_BATCH ({cfg.TRAIN.IMS_PER_BATCH}, the global batch) must be divisible "
                             f"by processes x TRAIN.ACCUMULATE_STEPS ({self.world_size} x {self.accumulate}).")
        self.start_iter = 0
        self.history = []  # loss averages of every PRINT_FREQ window: (iteration, {name: value})
        self._stop_signal = None
        self._writer = None
        self._tensorboard_on = cfg.DEBUG.TENSORBOARD
        self._keep_outputs = False  # set for the iterations whose outputs go to the TensorBoard image grid
        if cfg.TRAIN.RESUME:
            self.resume()

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return os.path.join(self.output_dir, CHECKPOINT_NAME)

    def state_dict(self, iteration):
        return {"iteration": iteration, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_states()}

    def save(self, iteration):
        """Atomically write checkpoint.pth.tar and checkpoint_<iteration>.pth; keep TRAIN.KEEP_LAST numbered ones."""
        if not comm.is_main_process():
            return
        state = self.state_dict(iteration)
        save_checkpoint(state, self.checkpoint_path)
        keep = self.cfg.TRAIN.KEEP_LAST
        if keep > 0:
            save_checkpoint(state, os.path.join(self.output_dir, f"checkpoint_{iteration:07d}.pth"))
            numbered = sorted(f for f in os.listdir(self.output_dir)
                              if f.startswith("checkpoint_") and f.endswith(".pth"))
            for old in numbered[:-keep]:
                os.remove(os.path.join(self.output_dir, old))

    def resume(self):
        if not os.path.isfile(self.checkpoint_path):
            logger.info("TRAIN.RESUME: no checkpoint at %s, starting from scratch.", self.checkpoint_path)
            return
        state = load_checkpoint(self.checkpoint_path)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            set_rng_states(state["rng"])
        self.start_iter = state["iteration"]
        logger.info("Resumed from %s at iteration %d.", self.checkpoint_path, self.start_iter)

    def save_final(self):
        if comm.is_main_process():
            save_checkpoint({"model": self.net.state_dict()}, os.path.join(self.output_dir, FINAL_NAME))

    # ---- the loop ------------------------------------------------------------------------------------------------
    def _install_signal_handlers(self):
        def handler(signum, _frame):
            self._stop_signal = signal.Signals(signum).name
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: no handler
                pass
        return previous

    def _forward(self, batch):
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            out = self.model(batch["image"], batch)
        return out, logged_losses(out)  # OM variables and losses are computed here, outside autocast, in float32

    def train_step(self, loader):
        """One optimizer step over TRAIN.ACCUMULATE_STEPS micro-batches; returns (losses, data seconds)."""
        data_time, totals = 0.0, {}
        for micro in range(self.accumulate):
            t0 = time.perf_counter()
            batch = to_device(next(loader), self.device)
            data_time += time.perf_counter() - t0
            last = micro == self.accumulate - 1
            sync = contextlib.nullcontext() if last or self.world_size == 1 else self.model.no_sync()
            with sync:
                out, logged = self._forward(batch)
                self.scaler.scale(logged["loss"] / self.accumulate).backward()
            for k, v in logged.items():
                totals[k] = totals.get(k, 0.0) + v.detach() / self.accumulate
        self._last_batch = batch
        # the outputs (and their OM cache) outlive the step only when the image grid will draw them
        self._last_out = out if self._keep_outputs else None
        return totals, data_time

    def train(self):
        cfg = self.cfg
        if comm.is_main_process():
            save_run_record(cfg, self.output_dir)
        max_iter = cfg.TRAIN.MAX_ITER
        if self.start_iter >= max_iter:
            logger.info("Already trained for %d iterations.", self.start_iter)
            self.save_final()
            return
        per_process = cfg.TRAIN.IMS_PER_BATCH // self.world_size
        loader = iter(build_train_loader(cfg, rank=self.rank, world_size=self.world_size,
                                         start=self.start_iter * per_process))
        self.model.train()
        logger.info("Training %s on %s for %d iterations (global batch %d, %d process(es), %d micro-batch(es)) on "
                    "%s%s.", cfg.MODEL.META_ARCHITECTURE, cfg.DATASET.DATASET, max_iter, cfg.TRAIN.IMS_PER_BATCH,
                    self.world_size, self.accumulate, self.device,
                    f", mixed precision {self.amp_dtype}" if self.amp_dtype else "")
        previous = self._install_signal_handlers()
        t_start, data_time, step_time, n, sums = time.perf_counter(), 0.0, 0.0, 0, {}
        done = self.start_iter
        try:
            for it in range(self.start_iter, max_iter):
                t0 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                self._keep_outputs = (cfg.DEBUG.DEBUG and self._tensorboard_on
                                      and (it + 1) % cfg.DEBUG.DEBUG_FREQ == 0)
                losses, dt = self.train_step(loader)
                bad = [k for k, v in losses.items() if not torch.isfinite(v)]
                if bad:  # checked before the step: the saved state is the last good one
                    self.save(it)
                    raise FloatingPointError(f"Non-finite {', '.join(bad)} at iteration {it + 1}; the last good state "
                                             f"(iteration {it}) is saved in {self.checkpoint_path}.")
                self.scaler.unscale_(self.optimizer)
                clip_gradients(cfg, self.net.parameters())
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                done = it + 1
                data_time += dt
                step_time += time.perf_counter() - t0 - dt
                n += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                if done % cfg.PRINT_FREQ == 0 or done == max_iter:
                    avg = {k: float(v) / n for k, v in sums.items()}
                    self.history.append((done, avg))
                    elapsed = time.perf_counter() - t_start
                    eta = elapsed / (done - self.start_iter) * (max_iter - done)
                    parts = "  ".join(f"{k} {v:.4f}" for k, v in avg.items())
                    logger.info("iter %d/%d  %s  lr %.2e  data %.3fs  step %.3fs  eta %s", done, max_iter, parts,
                                self.optimizer.param_groups[0]["lr"], data_time / n, step_time / n,
                                format_seconds(eta))
                    self._log_scalars(done, avg, data_time / n, step_time / n)
                    sums, data_time, step_time, n = {}, 0.0, 0.0, 0
                if self._keep_outputs:
                    self._log_images(done)
                    self._last_out = None
                if cfg.CKPT_FREQ > 0 and done % cfg.CKPT_FREQ == 0 and done < max_iter:
                    self.save(done)
                if self._stop_signal:
                    logger.info("%s received: saved the checkpoint of iteration %d, stopping.", self._stop_signal,
                                done)
                    self.save(done)
                    return
            self.save(max_iter)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._writer is not None:
                self._writer.close()
            self.save_final()
        logger.info("Training done in %s.", format_seconds(time.perf_counter() - t_start))

    # ---- TensorBoard ---------------------------------------------------------------------------------------------
    def _tensorboard(self):
        if self._writer is None and self._tensorboard_on and comm.is_main_process():
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.warning("DEBUG.TENSORBOARD is on but tensorboard is not installed (pip install tensorboard); "
                               "logging to the console only.")
                self._tensorboard_on = False
                return None
            self._writer = SummaryWriter(os.path.join(self.output_dir, "tensorboard"))
        return self._writer

    def _log_scalars(self, it, losses, data_time, step_time):
        writer = self._tensorboard()
        if writer is None:
            return
        for k, v in losses.items():
            writer.add_scalar(f"train/{k}", v, it)
        writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], it)
        writer.add_scalar("time/data_s", data_time, it)
        writer.add_scalar("time/step_s", step_time, it)

    def _log_images(self, it):
        writer = self._tensorboard()
        if writer is None:
            return
        from ..utils.visualization import om_variable_grid
        grid = om_variable_grid(self.cfg, self._last_out, self._last_batch, get_metadata(self.cfg))
        writer.add_image("train/om_variables", grid, it, dataformats="HWC")
