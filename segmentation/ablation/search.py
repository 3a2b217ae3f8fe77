"""``--search optuna``: an Optuna study over the grid file's ``search:`` space (or its grid's values as categorical
choices), each trial one run (a submitit job like a grid run), its objective the final validation metric; the
evaluations of TEST.EVAL_PERIOD are reported as intermediate values, so the pruner stops unpromising trials.

The study is stored in SQLite (``OUT/optuna.db``) unless ``--storage`` names another database URL (several machines
sharing one study). A rerun continues: trials left running by a stopped search resume from their folders, and new
trials are asked until ``--trials`` have ended.
"""
import logging
import os
import time

from ..engine.hooks import EarlyStop, HookBase
from ..utils import comm
from .jobs import JobPool, describe_outcome, make_executor, make_job, prepare_jobs
from .spec import SpecError, format_value

logger = logging.getLogger("segmentation")


def search_space(spec):
    """key -> distribution dict of the spec (``search:``, else every grid axis / variant key as categorical)."""
    if spec.search:
        return spec.search
    space = {}
    for variant in spec.variants:
        for key, value in variant.overrides.items():
            choices = space.setdefault(key, {"choices": []})["choices"]
            if value not in choices:
                choices.append(value)
    if not space:
        raise SpecError("--search optuna needs a space: 'search:' in the grid file, or variants / a grid to choose "
                        "from.")
    return space


def suggest(trial, space):
    """The overrides of ``trial``: categorical choices (any config values, offered to Optuna as their text),
    ints (low/high ints, optional step/log) and floats (optional step/log)."""
    overrides = {}
    for key, dist in space.items():
        if "choices" in dist:
            overrides[key] = _choice(dist, trial.suggest_categorical(key, _labels(dist)))
        elif {"low", "high"} <= set(dist):
            low, high, log = dist["low"], dist["high"], bool(dist.get("log", False))
            if isinstance(low, int) and isinstance(high, int) and not isinstance(dist.get("step", 1), float):
                overrides[key] = trial.suggest_int(key, low, high, step=dist.get("step", 1), log=log)
            else:
                overrides[key] = trial.suggest_float(key, float(low), float(high), step=dist.get("step"), log=log)
        else:
            raise SpecError(f"search: '{key}' needs {{choices: [...]}} or {{low: ..., high: ...[, log: true]"
                            f"[, step: ...]}}, got {dist!r}.")
    return overrides


def open_storage(url):
    """An Optuna RDB storage; SQLite waits for the lock instead of failing when several jobs write at once."""
    import optuna
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


class OptunaReporter(HookBase):
    """Reports every evaluation during training (TEST.EVAL_PERIOD) to the job's Optuna trial and stops the run
    (EarlyStop, run.json status ``pruned``) when the study's pruner says so; every process stops together."""

    def __init__(self, trial, metric):
        self.info, self.metric, self.trial = trial, metric, None

    def before_train(self, trainer):
        if comm.is_main_process():
            import optuna
            # the pruner is not stored with the study: the job carries the search's own
            study = optuna.load_study(study_name=self.info["study"], storage=open_storage(self.info["storage"]),
                                      pruner=self.info.get("pruner"))
            self.trial = optuna.trial.Trial(study, self.info["trial_id"])

    def after_step(self, trainer):
        evaluation = trainer.latest_evaluation
        if evaluation is None or evaluation[0] != trainer.done or trainer.done >= trainer.max_iter:
            return
        prune = False
        if self.trial is not None:
            value = float(evaluation[1][self.metric])
            self.trial.report(value, trainer.done)
            prune = self.trial.should_prune()
        if trainer.distributed:
            import torch
            flag = torch.tensor([int(prune)], device=trainer.device)
            torch.distributed.broadcast(flag, 0)
            prune = bool(flag.item())
        if prune:
            trainer.record_end("pruned", trainer.done, "Optuna's pruner")
            raise EarlyStop(f"Pruned by Optuna at iteration {trainer.done} ({self.metric} "
                            f"{evaluation[1][self.metric]:.2f}).")


def run_search(spec, out, options, trials, storage=None, study_name=None, log=print, command=""):
    """Run an Optuna study of ``trials`` trials over ``spec``'s space under ``out`` (trial folders
    ``trial_<number>``); returns (study, number of failed trials)."""
    import optuna
    import yaml
    os.makedirs(out, exist_ok=True)
    url = storage or f"sqlite:///{os.path.abspath(os.path.join(out, 'optuna.db'))}"
    name = study_name or os.path.basename(os.path.abspath(out))
    space = search_space(spec)
    with open(os.path.join(out, "ablation.yaml"), "w") as f:
        yaml.safe_dump({**spec.to_dict(), "mode": "optuna", "command": command, "storage": url, "study": name,
                        "trials": trials, "space": space}, f, sort_keys=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=max(2, options.jobs))
    study = optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize",
                                load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=0), pruner=pruner)
    states = optuna.trial.TrialState
    stale = study.get_trials(deepcopy=False, states=(states.RUNNING,))  # left running by a stopped search
    ended = len(study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL)))
    log(f"Optuna study '{name}' in {url}: {ended} of {trials} trials ended, {len(stale)} to resume; "
        f"{options.jobs} at once on '{options.cluster}'")
    pool = JobPool(make_executor(options, os.path.join(out, "submitit")), options.jobs)
    resume = [(t.number, t._trial_id, t.params) for t in stale]
    failed, t0 = 0, time.time()

    def job_for(number, trial_id, overrides):
        variant = f"trial_{number:04d}"
        job = make_job(spec, os.path.join(out, variant), variant, overrides, 0, trial=number)
        job.trial = {"storage": url, "study": name, "trial_id": trial_id, "pruner": pruner}
        prepare_jobs([job], options)
        return job

    while True:
        while pool.has_room() and (resume or ended + len(pool.running) < trials):
            if resume:  # a trial of a stopped search: same parameters, its folder resumes from its checkpoint
                number, trial_id, params = resume.pop(0)
                overrides = _decode_params(params, space)
            else:
                trial = study.ask()
                number, trial_id, overrides = trial.number, trial._trial_id, suggest(trial, space)
            pool.submit(job_for(number, trial_id, overrides))
        if not pool.running:
            return study, failed
        for job, result, error in pool.wait_any():
            ended += 1
            number = job.record["trial"]
            if error is not None:
                failed += 1
                study.tell(number, state=states.FAIL)
            elif result["status"] == "pruned":
                study.tell(number, state=states.PRUNED)
            else:
                study.tell(number, result["value"])
            log(f"[trial {number}] {describe_outcome(job, result, error)} ({time.time() - t0:.0f} s)")


def _decode_params(params, space):
    """The overrides of a stored trial's params (categorical labels back to their config values)."""
    out = {}
    for key, value in params.items():
        dist = space.get(key, {})
        out[key] = _choice(dist, value) if "choices" in dist else value
    return out


def _labels(dist):
    """The text Optuna stores for each categorical choice (any config value: lists, tuples, strings)."""
    return [format_value(c) for c in dist["choices"]]


def _choice(dist, label):
    """The config value of a categorical choice's stored text."""
    return dist["choices"][_labels(dist).index(label)]
