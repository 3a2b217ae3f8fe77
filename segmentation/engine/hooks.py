"""Hooks around the training step (detectron2's HookBase shape): everything the loop does besides the step itself.

The trainer calls, for every hook in order: ``before_train`` once; per iteration ``before_step``, then inside the
step ``step_checks`` (0-d bool tensors on the device, named; all hooks' checks are read with one host
synchronisation, all-reduced with MIN under DDP) and ``after_checks`` (the hook's own results, before the
optimizer update), then ``after_step``; ``after_train`` once, also after an error (``error`` set).

The trainer exposes to hooks: ``cfg``, ``iter`` (the iteration in progress, 0-based), ``done`` (iterations
completed), ``max_iter``, ``losses`` (this step's {name: 0-d tensor}), ``lr`` (the rate this step used),
``data_time`` / ``step_time`` (seconds), ``latest_evaluation`` ((iteration, metrics) of the last evaluation, set
by PeriodicEvaluator), ``save(iteration)``, ``record_end(status, iteration, reason)``.
"""
import json
import logging
import os
import signal
import time

import torch

from ..config import dump_config
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


class EarlyStop(Exception):
    """A hook ended training on purpose (e.g. an Optuna pruner) after recording why in run.json: not an error, and
    the trainer saves nothing more."""


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
        trainer.keep_outputs = self.enabled and cfg.DEBUG.DEBUG and (trainer.iter + 1) % cfg.DEBUG.DEBUG_FREQ == 0

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


class PeriodicEvaluator(HookBase):
    """TEST.EVAL_PERIOD: evaluates on TEST_SPLIT every that many iterations and after the last one (distributed as
    test_net: each process its shard), logs the metrics (console, TensorBoard ``val/*``), writes them to
    ``OUTPUT_DIR/eval/training/iter_<N>/``, and keeps ``OUTPUT_DIR/best.pth`` for the best TEST.BEST_METRIC so far,
    recorded in run.json (``best``); a resumed run starts from the recorded best. The RNG states are restored after
    each evaluation, so that training continues exactly as without it."""

    def __init__(self, cfg, tensorboard=None):
        self.period, self.metric, self.tensorboard = cfg.TEST.EVAL_PERIOD, cfg.TEST.BEST_METRIC, tensorboard
        self.best, self.loader = None, None

    def before_train(self, trainer):
        from ..utils.runtime import read_run_record
        record = read_run_record(trainer.output_dir) if trainer.start_iter > 0 else None
        self.best = (record or {}).get("best")

    def after_step(self, trainer):
        done = trainer.done
        if self.period > 0 and (done % self.period == 0 or done == trainer.max_iter):
            self.evaluate(trainer)

    def evaluate(self, trainer):
        from ..data import build_test_loader, get_metadata
        from ..utils.runtime import rng_states, set_rng_states, update_run_record
        from .evaluator import evaluate
        if self.loader is None:
            self.loader = build_test_loader(trainer.cfg, trainer.rank, trainer.world_size)
        rng = rng_states()
        out = os.path.join(trainer.output_dir, "eval", "training", f"iter_{trainer.done:07d}")
        logger.info("Evaluating at iteration %d on %s.", trainer.done, trainer.cfg.DATASET.TEST_SPLIT)
        try:
            metrics = evaluate(trainer.cfg, trainer.net, self.loader, get_metadata(trainer.cfg), trainer.device,
                               output_dir=out)  # as test_net: every process gets it, the main one writes metrics
        finally:
            trainer.model.train()
            set_rng_states(rng)
        trainer.latest_evaluation = (trainer.done, metrics)  # for the hooks after this one (e.g. Optuna's pruning)
        if self.metric not in metrics:
            raise KeyError(f"TEST.BEST_METRIC '{self.metric}' is not a metric of this evaluation; its metrics: "
                           f"{', '.join(k for k, v in metrics.items() if not isinstance(v, dict))}.")
        if self.tensorboard is not None:
            self.tensorboard.scalars(trainer, {f"val/{k}": float(v) for k, v in metrics.items()
                                               if isinstance(v, (int, float)) or hasattr(v, "__float__")})
        value = float(metrics[self.metric])
        if self.best is None or value > self.best["value"]:
            self.best = {"metric": self.metric, "value": value, "iteration": trainer.done}
            if comm.is_main_process():
                from ..utils.checkpoint import save_checkpoint
                plain = json.loads(json.dumps(metrics, default=float))  # numpy scalars -> floats (weights_only load)
                save_checkpoint({"model": trainer.net.state_dict(), "iteration": trainer.done, "metrics": plain,
                                 "config": dump_config(trainer.cfg)}, os.path.join(trainer.output_dir, "best.pth"))
            logger.info("New best %s %.2f at iteration %d: saved best.pth.", self.metric, value, trainer.done)
        if comm.is_main_process():
            update_run_record(trainer.output_dir, best=self.best)


def default_hooks(cfg):
    """The hooks of a training run, in calling order: checks first, then logging, then what may stop, save or
    evaluate (an evaluation comes after the checkpoint of its iteration)."""
    tensorboard = TensorBoardWriter(cfg)
    return [NonFiniteCheck(), tensorboard, LossLogger(tensorboard), StopOnSignal(), PeriodicCheckpointer(),
            PeriodicEvaluator(cfg, tensorboard)]
