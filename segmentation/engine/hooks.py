"""Hooks around the training step (detectron2's HookBase shape): everything the loop does besides the step itself.

The trainer calls, for every hook in order: ``before_train`` once; per iteration ``before_step``, then inside the
step ``step_checks`` (0-d bool tensors on the device, named; all hooks' checks are read with one host
synchronisation, all-reduced with MIN under DDP) and ``after_checks`` (the hook's own results, before the
optimizer update), then ``after_step``; ``after_train`` once, also after an error (``error`` set).

The trainer exposes to hooks: ``cfg``, ``iter`` (the iteration in progress, 0-based), ``done`` (iterations
completed), ``max_iter``, ``losses`` (this step's {name: 0-d tensor}), ``lr`` (the rate this step used),
``data_time`` / ``step_time`` (seconds), ``save(iteration)``, ``record_end(status, iteration, reason)``.
"""
import logging
import os
import signal
import time

import torch

from ..utils import comm
from ..utils.logger import format_seconds

logger = logging.getLogger("segmentation")


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped training after the iteration in progress was saved; ``exit_code`` is 128 + the signal
    number, as a shell reports a process killed by that signal."""

    def __init__(self, signal_name, iteration, path):
        self.signal_name, self.iteration = signal_name, iteration
        self.exit_code = 128 + int(signal.Signals[signal_name])
        super().__init__(f"{signal_name} received: stopped after iteration {iteration}, saved in {path}; continue "
                         f"with TRAIN.RESUME True.")


class HookBase:
    """A hook does nothing unless it overrides a method; see the module docstring for when each is called."""

    def before_train(self, trainer):
        pass

    def before_step(self, trainer):
        pass

    def step_checks(self, trainer):
        return {}

    def after_checks(self, trainer, ok):
        pass

    def after_step(self, trainer):
        pass

    def after_train(self, trainer, error=None):
        pass


class NonFiniteCheck(HookBase):
    """Stops at the first non-finite input image, parameter, BatchNorm buffer, gradient or loss, before the update:
    the step is rolled back, the state before it saved, and FloatingPointError names what was wrong."""

    def step_checks(self, trainer):
        return trainer.health(trainer.losses)

    def after_checks(self, trainer, ok):
        failed = [name for name, good in ok.items() if not good]
        if failed:
            trainer.fail_non_finite(trainer.iter, failed)


class StopOnSignal(HookBase):
    """SIGINT/SIGTERM finish the iteration in progress, save it and raise TrainingInterrupted (every process stops
    at the same iteration: the flag is one of the all-reduced checks)."""

    def __init__(self):
        self.previous, self.stop = {}, False

    def before_train(self, trainer):
        def handler(signum, _frame):
            trainer._stop_signal = signal.Signals(signum).name
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: no handler
                pass

    def step_checks(self, trainer):
        return {"no stop signal": torch.tensor(trainer._stop_signal is None, device=trainer.device)}

    def after_checks(self, trainer, ok):
        self.stop = not ok["no stop signal"]

    def after_step(self, trainer):
        if self.stop and trainer.done < trainer.max_iter:
            name = trainer._stop_signal or "SIGTERM"  # None: another process received it
            trainer.save(trainer.done)
            trainer.record_end("interrupted", trainer.done, f"{name} received")
            raise TrainingInterrupted(name, trainer.done, trainer.checkpoint_path)

    def after_train(self, trainer, error=None):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


class PeriodicCheckpointer(HookBase):
    """Saves every CKPT_FREQ iterations (the last one is saved by the trainer)."""

    def after_step(self, trainer):
        freq = trainer.cfg.CKPT_FREQ
        if freq > 0 and trainer.done % freq == 0 and trainer.done < trainer.max_iter:
            trainer.save(trainer.done)


class TensorBoardWriter(HookBase):
    """DEBUG.TENSORBOARD: the logged averages as scalars (written by LossLogger through ``scalars``) and, every
    DEBUG.DEBUG_FREQ iterations with DEBUG.DEBUG, a grid of the step's OM variables; main process only."""

    def __init__(self, cfg):
        self.enabled = cfg.DEBUG.TENSORBOARD and comm.is_main_process()
        self.writer = None

    def _writer(self, trainer):
        if self.writer is None and self.enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.warning("DEBUG.TENSORBOARD is on but tensorboard is not installed (pip install tensorboard); "
                               "logging to the console only.")
                self.enabled = False
                return None
            self.writer = SummaryWriter(os.path.join(trainer.output_dir, "tensorboard"))
        return self.writer

    def before_step(self, trainer):
        cfg = trainer.cfg
        trainer.keep_outputs = (cfg.DEBUG.DEBUG and cfg.DEBUG.TENSORBOARD
                                and (trainer.iter + 1) % cfg.DEBUG.DEBUG_FREQ == 0)

    def scalars(self, trainer, values):
        writer = self._writer(trainer)
        if writer is not None:
            for name, value in values.items():
                writer.add_scalar(name, value, trainer.done)

    def after_step(self, trainer):
        if trainer.keep_outputs:
            writer = self._writer(trainer)
            if writer is not None:
                from ..data import get_metadata
                from ..model.output_math.drawing import om_variable_grid
                grid = om_variable_grid(trainer.cfg, trainer.last_outputs, trainer.last_batch,
                                        get_metadata(trainer.cfg))
                writer.add_image("train/om_variables", grid, trainer.done, dataformats="HWC")
            trainer.last_outputs = None

    def after_train(self, trainer, error=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class LossLogger(HookBase):
    """Every PRINT_FREQ iterations (and the last): the window's mean losses, learning rate, data and step time
    and the ETA on the console, in ``trainer.history``, and as TensorBoard scalars (``tensorboard``)."""

    def __init__(self, tensorboard=None):
        self.tensorboard = tensorboard
        self._reset()

    def _reset(self):
        self.sums, self.data_time, self.step_time, self.n = {}, 0.0, 0.0, 0

    def before_train(self, trainer):
        self._reset()
        self.t_start = time.perf_counter()

    def after_step(self, trainer):
        self.data_time += trainer.data_time
        self.step_time += trainer.step_time
        self.n += 1
        for name, value in trainer.losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        done, max_iter = trainer.done, trainer.max_iter
        if done % trainer.cfg.PRINT_FREQ and done != max_iter:
            return
        avg = {name: float(total) / self.n for name, total in self.sums.items()}  # the window's one host read
        trainer.history.append((done, avg))
        elapsed = time.perf_counter() - self.t_start
        eta = elapsed / (done - trainer.start_iter) * (max_iter - done)
        parts = "  ".join(f"{k} {v:.4f}" for k, v in avg.items())
        data, step = self.data_time / self.n, self.step_time / self.n
        logger.info("iter %d/%d  %s  lr %.2e  data %.3fs  step %.3fs  eta %s", done, max_iter, parts, trainer.lr,
                    data, step, format_seconds(eta))
        if self.tensorboard is not None:
            self.tensorboard.scalars(trainer, {**{f"train/{k}": v for k, v in avg.items()}, "train/lr": trainer.lr,
                                               "time/data_s": data, "time/step_s": step})
        self._reset()

    def after_train(self, trainer, error=None):
        if error is None:
            logger.info("Training done in %s.", format_seconds(time.perf_counter() - self.t_start))


def default_hooks(cfg):
    """The hooks of a training run, in calling order: checks first, then logging, then what may stop or save."""
    tensorboard = TensorBoardWriter(cfg)
    return [NonFiniteCheck(), tensorboard, LossLogger(tensorboard), StopOnSignal(), PeriodicCheckpointer()]
