"""The training loop: single process by default, DistributedDataParallel under torchrun.

``Trainer.train`` is a short loop over ``run_step`` (forward/backward, the hooks' checks read in one host
synchronisation, the optimizer update); what happens around the step are hooks (``hooks.py``): the non-finite
check, loss logging, TensorBoard, the stop on SIGINT/SIGTERM, periodic checkpoints and evaluations (``default_hooks``).

Features: mixed precision for the network (OM targets, losses and decoding stay float32), gradient accumulation and
clipping, durable atomic checkpoints keeping the last K, exact resume (model, optimizer, grad scaler, iteration, RNG
states and the data stream; the schedule follows the current config), progress lines with ETA, TensorBoard scalars
and OM-variable image grids.

Nothing lost, nothing silent:

* SIGINT/SIGTERM (to the trainer or its whole process group, loader workers included) finish the iteration in
  progress, save it and raise ``TrainingInterrupted`` (the tools exit with 128 + the signal number).
* Every step reads one vector of health flags (losses, input images, gradients, parameters, BatchNorm buffers) in a
  single host synchronisation. A non-finite value stops training with what was wrong named; the state saved is the
  state before the failing step, bit for bit (the step's BatchNorm updates and RNG draws are rolled back).
* A crash (a loader worker killed, a data error) saves the last completed iteration when the state is intact.
* A checkpoint holding a non-finite tensor never replaces a finite one; ``final_state.pth`` is written only after
  the last iteration; ``run.json`` records how the run ended (``status``: running, finished, interrupted, failed).
"""
import contextlib
import logging
import os
import signal
import time

import torch
import torch.nn as nn

from ..config import dump_config, validate_config
from ..data import build_train_loader
from ..model import build_model, compile_network
from ..model.output_math import OutputMath
from ..solver import build_lr_scheduler, build_optimizer, clip_gradients
from ..utils import comm
from ..utils.checkpoint import (
    CheckpointWriteError,
    load_checkpoint,
    non_finite_tensors,
    remove_orphaned_temporaries,
    save_checkpoint,
)
from ..utils.runtime import (  # noqa: F401  (CHECKPOINT_NAME .. read_run_record: the run folder's API, re-exported)
    CHECKPOINT_NAME,
    FINAL_NAME,
    RUN_RECORD_NAME,
    configure_runtime,
    read_run_record,
    resolve_device,
    rng_states,
    save_run_record,
    seed_everything,
    set_rng_states,
    update_run_record,
)
from .hooks import EarlyStop, TrainingInterrupted, default_hooks  # noqa: F401  (TrainingInterrupted: re-exported)

logger = logging.getLogger("segmentation")



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


def require_trainable(cfg, model):
    """Refuse, before anything runs, a formulation whose loss reads no network output (e.g. every prediction
    replaced by an oracle mixin): such a config is for evaluation."""
    from ..model.output_math.build import loss_reads_network_outputs
    om_class = getattr(model, "om_class", None)
    if om_class is not None and not loss_reads_network_outputs(om_class):
        raise ValueError(f"Nothing to train: the loss of OM.NAME '{cfg.OM.NAME}' with OM.MIXINS "
                         f"{list(cfg.OM.MIXINS)} reads no network output (the mixins replace every prediction it "
                         f"uses). This config is for evaluation: run it with tools/test_net.py and TEST.MODEL_FILE "
                         f"set to any checkpoint of this architecture.")


_RESUME_IGNORED = ("TRAIN.RESUME", "OUTPUT_DIR")


def check_resumed_config(saved_yaml, cfg, path):
    """Log every key whose value differs between the checkpoint's config and ``cfg``; refuse an optimizer change
    (its state would not fit the new optimizer)."""
    import yaml

    def flat(node, prefix=""):  # a CfgNode is a dict too
        out = {}
        for k, v in node.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = list(v) if isinstance(v, tuple) else v
        return out
    old = flat(yaml.safe_load(saved_yaml) or {})
    new = flat(cfg)
    if old.get("SOLVER.OPTIMIZER", cfg.SOLVER.OPTIMIZER) != cfg.SOLVER.OPTIMIZER:
        raise ValueError(f"SOLVER.OPTIMIZER is '{cfg.SOLVER.OPTIMIZER}' but the checkpoint {path} was trained with "
                         f"'{old['SOLVER.OPTIMIZER']}': its optimizer state cannot be resumed. Set SOLVER.OPTIMIZER "
                         f"{old['SOLVER.OPTIMIZER']}, or start a new run (another OUTPUT_DIR, MODEL.WEIGHTS {path}).")
    changed = [f"{k}: {old[k]!r} -> {new[k]!r}" for k in sorted(new)
               if k in old and k not in _RESUME_IGNORED and old[k] != new[k]]
    if changed:
        logger.warning("Resuming with %d config value(s) changed since the checkpoint (the current ones apply, the "
                       "learning-rate schedule included):\n  %s", len(changed), "\n  ".join(changed))


class Trainer:
    """Builds model, data, optimizer and scheduler from ``cfg`` and runs ``TRAIN.MAX_ITER`` iterations."""

    def __init__(self, cfg):
        validate_config(cfg)
        self.cfg = cfg
        self.output_dir = cfg.OUTPUT_DIR
        self.device = resolve_device(cfg)
        self.rank, self.world_size, local_rank = comm.init_distributed(self.device.type, cfg.DIST_TIMEOUT)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", local_rank)
        configure_runtime(cfg, self.device)
        seed_everything(cfg.SEED)
        if cfg.OM.NAME and not cfg.DATASET.PAN_ONLY and "cpu-tensors" not in cfg.OM.MIXINS:
            logger.warning("The OM computes every target itself, but DATASET.PAN_ONLY is False: the loaders also "
                           "compute CPU targets that nothing reads. Set DATASET.PAN_ONLY True to skip them.")
        model = build_model(cfg)
        require_trainable(cfg, model)
        # under torchrun (even as its only process): the process group, SyncBatchNorm on CUDA, DDP
        self.distributed = comm.is_distributed()
        if self.distributed:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            elif self.world_size > 1:
                logger.warning("SyncBatchNorm needs CUDA: each of the %d CPU processes normalises its own batch.",
                               self.world_size)
        self.model = compile_network(cfg, model.to(self.device))  # MODEL.COMPILE: the network's forward
        self.net = self.model  # the module without the DDP wrapper
        if self.distributed:
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
        self.hooks = default_hooks(cfg)
        self._stop_signal = None  # the name of the signal received (set by the StopOnSignal hook's handler)
        self.keep_outputs = False  # set for the iterations whose outputs go to the TensorBoard image grid
        self.last_outputs = self.last_batch = None
        self.latest_evaluation = None  # (iteration, metrics) of the last evaluation during training (PeriodicEvaluator)
        # what a failing step rolls back: the BatchNorm buffers and RNG states from before its forward passes
        self._buffers = list(self.net.buffers())
        self._buffer_snapshot = [b.detach().clone() for b in self._buffers]
        self._float_buffers = [b for b in self._buffers if b.is_floating_point()]  # what the health check reads
        self._params = [p for p in self.net.parameters() if p.requires_grad]
        self._rng_snapshot = None
        self._worker_exited = False  # set by the SIGCHLD handler of train()
        if comm.is_main_process():
            remove_orphaned_temporaries(self.output_dir)
        if cfg.TRAIN.RESUME:
            self.resume()

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return os.path.join(self.output_dir, CHECKPOINT_NAME)

    def state_dict(self, iteration, rng=None):
        return {"iteration": iteration, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rng if rng is not None else rng_states(), "config": dump_config(self.cfg)}

    def save(self, iteration, rng=None):
        """Atomically write checkpoint.pth.tar and checkpoint_<iteration>.pth; keep TRAIN.KEEP_LAST numbered ones.
        A state with a non-finite tensor is refused (logged, nothing written): it never replaces a finite one."""
        if not comm.is_main_process():
            return False
        state = self.state_dict(iteration, rng)
        bad = non_finite_tensors({"model": state["model"], "optimizer": state["optimizer"]})
        if bad:
            logger.error("Not saving iteration %d: %d tensor(s) are not finite (%s); %s keeps the last finite state.",
                         iteration, len(bad), ", ".join(bad[:5]), self.checkpoint_path)
            return False
        save_checkpoint(state, self.checkpoint_path)
        keep = self.cfg.TRAIN.KEEP_LAST
        if keep > 0:
            save_checkpoint(state, os.path.join(self.output_dir, f"checkpoint_{iteration:07d}.pth"))
            numbered = sorted(f for f in os.listdir(self.output_dir)
                              if f.startswith("checkpoint_") and f.endswith(".pth"))
            for old in numbered[:-keep]:
                os.remove(os.path.join(self.output_dir, old))
        return True

    def resume(self):
        """Continue from checkpoint.pth.tar: model, optimizer state, grad scaler, RNG and iteration come from it;
        the hyperparameters and the schedule come from the current config (differences are logged)."""
        if not os.path.isfile(self.checkpoint_path):
            logger.info("TRAIN.RESUME: no checkpoint at %s, starting from scratch.", self.checkpoint_path)
            return
        state = load_checkpoint(self.checkpoint_path)
        if "config" in state:
            check_resumed_config(state["config"], self.cfg, self.checkpoint_path)
        self.net.load_state_dict(state["model"])
        current = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, hyper in zip(self.optimizer.param_groups, current):
            group.update(hyper)  # lr, weight decay, momentum ... of the current config
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            set_rng_states(state["rng"])
        self.start_iter = state["iteration"]
        # the schedule of the current config (TRAIN.MAX_ITER, SOLVER.*), at the resumed iteration
        self.scheduler.last_epoch = self.start_iter
        lrs = self.scheduler.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scheduler._last_lr = list(lrs)
        logger.info("Resumed from %s at iteration %d.", self.checkpoint_path, self.start_iter)

    def save_final(self):
        """OUTPUT_DIR/final_state.pth: the weights, and the config they were trained with (read by evaluation)."""
        if comm.is_main_process():
            save_checkpoint({"model": self.net.state_dict(), "config": dump_config(self.cfg)},
                            os.path.join(self.output_dir, FINAL_NAME))

    # ---- the loop ------------------------------------------------------------------------------------------------
    def _on_child_exit(self, signum, frame):
        self._worker_exited = True

    def _raise_if_a_worker_died(self):
        if self._worker_exited:
            self._worker_exited = False
            from torch.utils.data._utils.signal_handling import _error_if_any_worker_fails
            _error_if_any_worker_fails()  # raises "DataLoader worker (pid N) is killed by signal: ..."

    def _forward(self, batch):
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            out = self.model(batch["image"], batch)
        return out, logged_losses(out)  # OM variables and losses are computed here, outside autocast, in float32

    def train_step(self, loader):
        """One optimizer step's forward and backward passes over TRAIN.ACCUMULATE_STEPS micro-batches; returns
        (losses, data seconds). The input images' finiteness is recorded for ``health``."""
        data_time, totals = 0.0, {}
        self._inputs = []  # (file names, per-sample finite flags) of every micro-batch
        for micro in range(self.accumulate):
            t0 = time.perf_counter()
            self._raise_if_a_worker_died()
            batch = to_device(next(loader), self.device)
            data_time += time.perf_counter() - t0
            self._phase = "forward"  # from here the step changes BatchNorm buffers and RNG states
            self._inputs.append((batch.get("file_name"), torch.isfinite(batch["image"]).flatten(1).all(1)))
            last = micro == self.accumulate - 1
            sync = contextlib.nullcontext() if last or not self.distributed else self.model.no_sync()
            with sync:
                out, logged = self._forward(batch)
                self.scaler.scale(logged["loss"] / self.accumulate).backward()
            for k, v in logged.items():
                totals[k] = totals.get(k, 0.0) + v.detach() / self.accumulate
        self.last_batch = batch
        # the outputs (and their OM cache) outlive the step only when the image grid will draw them
        self.last_outputs = out if self.keep_outputs else None
        return totals, data_time

    def _snapshot(self):
        """Remember what a failing step must roll back: BatchNorm buffers and RNG states."""
        torch._foreach_copy_(self._buffer_snapshot, self._buffers)
        self._rng_snapshot = rng_states()

    def _rollback(self):
        torch._foreach_copy_(self._buffers, self._buffer_snapshot)
        set_rng_states(self._rng_snapshot)

    def health(self, losses):
        """Named health checks of this step as {name: 0-d bool tensor on the device} (nothing read yet): input
        images, parameters, BatchNorm buffers, gradients (unless the fp16 grad scaler handles them), losses."""
        checks = {"input images": torch.cat([f for _, f in self._inputs]).all()}  # causes first, then effects
        grads = [] if self.scaler.is_enabled() else [p.grad for p in self._params if p.grad is not None]
        for name, tensors in (("parameters", self._params), ("BatchNorm buffers", self._float_buffers),
                              ("gradients", grads)):
            if tensors:
                # one fused L1 norm per list: finite iff every value is (short of absolute sums beyond float32's
                # 3.4e38); 2.7x cheaper than the max norm on CPU, and it does not overflow like the L2 norm
                checks[name] = torch.isfinite(torch.stack(torch._foreach_norm(tensors, 1))).all()
        checks.update({f"loss '{k}'": torch.isfinite(v) for k, v in losses.items()})
        return checks

    def _describe_non_finite(self, failed):
        """Names of what is not finite, for the error message (read only when a check failed)."""
        parts = []
        for name in failed:
            if name == "input images":
                files = [f for names, ok in self._inputs for f, good in zip(names or [], ok.tolist()) if not good]
                parts.append(f"input images ({', '.join(map(str, files)) or 'unnamed'}; check the data and "
                             f"DATASET.MEAN/STD)")
            elif name in ("parameters", "gradients", "BatchNorm buffers"):
                if name == "BatchNorm buffers":
                    named = dict(self.net.named_buffers())
                else:
                    named = {n: p if name == "parameters" else p.grad for n, p in self.net.named_parameters()
                             if p.requires_grad and (name == "parameters" or p.grad is not None)}
                bad = non_finite_tensors(named)[:5]
                parts.append(f"{name} ({', '.join(bad) or 'finite values too large to sum in float32'})")
            else:
                parts.append(name)
        return "; ".join(parts)

    def run_step(self):
        """One iteration: snapshot, forward and backward passes, the hooks' checks (one host synchronisation), the
        optimizer update. Sets ``losses``, ``lr``, ``data_time``, ``step_time`` and ``done``."""
        t0 = time.perf_counter()
        self._snapshot()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses, self.data_time = self.train_step(self._loader)
        checks = [hook.step_checks(self) for hook in self.hooks]
        names = [name for part in checks for name in part]
        flags = torch.stack([flag for part in checks for flag in part.values()]).to(torch.int32)
        if self.distributed:  # every process fails, or stops, at the same iteration
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
        ok = dict(zip(names, flags.tolist()))  # the step's one host synchronisation
        for hook, part in zip(self.hooks, checks):
            hook.after_checks(self, {name: ok[name] for name in part})
        self.lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
        self._phase = "update"
        self.scaler.unscale_(self.optimizer)
        clip_gradients(self.cfg, self.net.parameters())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.done = self.iter + 1
        self._phase = "clean"
        self.step_time = time.perf_counter() - t0 - self.data_time

    def train(self):
        """Run the remaining iterations. Raises TrainingInterrupted after a SIGINT/SIGTERM (state saved),
        FloatingPointError on a non-finite value (the state before the failing step saved)."""
        cfg = self.cfg
        self.max_iter = cfg.TRAIN.MAX_ITER
        if comm.is_main_process():
            # a resumed run keeps what the record knows of the iterations before (the best evaluation so far)
            earlier = read_run_record(self.output_dir) if self.start_iter > 0 else None
            kept = {"best": earlier["best"]} if earlier and earlier.get("best") else {}
            save_run_record(cfg, self.output_dir, status="running", start_iteration=self.start_iter,
                            max_iter=self.max_iter, **kept)
        if self.start_iter >= self.max_iter:
            logger.info("Already trained for %d iterations.", self.start_iter)
            self.save_final()
            self.record_end("finished", self.start_iter)
            return
        per_process = cfg.TRAIN.IMS_PER_BATCH // self.world_size
        self._loader = iter(build_train_loader(cfg, rank=self.rank, world_size=self.world_size,
                                               start=self.start_iter * per_process))
        self.model.train()
        logger.info("Training %s on %s for %d iterations (global batch %d, %d process(es)%s, %d micro-batch(es)) on "
                    "%s%s.", cfg.MODEL.META_ARCHITECTURE, cfg.DATASET.DATASET, self.max_iter,
                    cfg.TRAIN.IMS_PER_BATCH, self.world_size,
                    f", process group backend {torch.distributed.get_backend()}" if self.distributed else "",
                    self.accumulate, self.device, f", mixed precision {self.amp_dtype}" if self.amp_dtype else "")
        previous_sigchld = self._watch_loader_workers()
        self.done = self.start_iter
        self._phase = "clean"  # clean: the state is that of iteration `done`; forward: restorable; update: not
        error = None
        try:
            for hook in self.hooks:
                hook.before_train(self)
            for it in range(self.start_iter, self.max_iter):
                self.iter = it
                for hook in self.hooks:
                    hook.before_step(self)
                self.run_step()
                for hook in self.hooks:
                    hook.after_step(self)
            self.save(self.max_iter)
            self.save_final()
            self.record_end("finished", self.max_iter)
        except BaseException as e:
            error = e
            if not isinstance(e, (TrainingInterrupted, FloatingPointError, EarlyStop)):  # saved what they could
                self._save_after_crash(self.done, e)
            raise
        finally:
            # end the loader workers now, not whenever the exception's traceback (which holds this frame) is freed
            self._loader = None
            if previous_sigchld is not None:
                signal.signal(signal.SIGCHLD, previous_sigchld)
            for hook in reversed(self.hooks):
                hook.after_train(self, error)

    def _watch_loader_workers(self):
        """The DataLoader raises a worker's death from its SIGCHLD handler, wherever the main process is (e.g.
        inside optimizer.step()); record it instead, and raise it where the state is intact: before a batch is
        fetched (train_step). Returns the previous handler (None when not installed)."""
        self._worker_exited = False
        if self.cfg.DATALOADER.NUM_WORKERS > 0 and hasattr(signal, "SIGCHLD"):
            return signal.signal(signal.SIGCHLD, self._on_child_exit)
        return None

    def record_end(self, status, iteration, reason=""):
        if comm.is_main_process():
            update_run_record(self.output_dir, status=status, iteration=iteration, reason=reason)

    def fail_non_finite(self, it, failed):
        """Roll the failing step back, save the state before it (unless it is itself broken), raise."""
        what = self._describe_non_finite(failed)
        if "parameters" in failed:  # made by the previous update: the state before this step is already broken
            saved = f"nothing saved: {self.checkpoint_path} keeps the last finite state (lower SOLVER.BASE_LR?)"
        else:
            self._rollback()
            saved = (f"the state before it (iteration {it}) is saved in {self.checkpoint_path}"
                     if it > self.start_iter and self.save(it, rng=self._rng_snapshot) else
                     "nothing new to save")
        self.record_end("failed", it, f"non-finite values at iteration {it + 1}: {what}")
        raise FloatingPointError(f"Non-finite values at iteration {it + 1}: {what}; {saved}.")

    def _save_after_crash(self, done, error):
        """After an unexpected error, save the last completed iteration if the state is intact (e.g. a loader
        worker died while the next batch was being fetched) and record the failure."""
        saved = False
        if self._phase != "update" and done > self.start_iter and not isinstance(error, CheckpointWriteError):
            if self._phase == "forward":
                self._rollback()
            try:
                saved = self.save(done, rng=self._rng_snapshot)
            except Exception as save_error:  # report the original error, not this one
                logger.error("Could not save after the error: %s", save_error)
        if saved:
            logger.error("Training stopped by %s; the state of iteration %d is saved in %s.",
                         type(error).__name__, done, self.checkpoint_path)
        try:
            self.record_end("failed", done, f"{type(error).__name__}: {error}")
        except OSError:
            pass
