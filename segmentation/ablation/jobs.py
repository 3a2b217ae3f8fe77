"""One run of an ablation (train, then evaluate), and their submission as submitit jobs.

A run lives in ``OUT/<variant>/seed<k>/``: the training's own files (config.yaml, run.json, checkpoints, log.txt,
tensorboard/, eval/training/iter_<N>/metrics.json), ``ablation.json`` (variant, overrides, seed: written before the
job starts) and ``result.json`` (the final metrics: written last, so its presence means the run is done). A rerun
skips done runs and resumes the others from their checkpoint (``TRAIN.RESUME True``).
"""
import json
import logging
import os
import time
from dataclasses import dataclass, field

from ..utils.runtime import write_json_atomically
from .spec import format_value

logger = logging.getLogger("segmentation")

ABLATION_RECORD = "ablation.json"
RESULT_RECORD = "result.json"


@dataclass
class RunJob:
    """Everything a job needs, picklable: the base config, its overrides (``KEY VALUE`` words, OUTPUT_DIR and SEED
    included), the run's description for ablation.json, and how it runs (threads, distributed, Optuna trial)."""
    folder: str
    config: str
    opts: list
    record: dict = field(default_factory=dict)
    metric: str = "PQ"
    threads: int = 0  # > 0: NUM_THREADS for this job, unless the overrides set it
    distributed: bool = False  # the job's tasks form one torch.distributed run (submitit's TorchDistributedEnvironment)
    trial: dict | None = None  # {"storage", "study", "trial_id", "pruner"}: report evaluations to this Optuna trial

    @property
    def label(self):
        return os.path.join(self.record.get("variant", "?"), f"seed{self.record.get('seed', 0)}")


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_done(folder):
    """The run in ``folder`` has its result (finished, or pruned by a search)."""
    return read_json(os.path.join(folder, RESULT_RECORD)) is not None


def job_config(job):
    """The run's config: the base config, the job's overrides, resume on, an evaluation at the end at least."""
    from ..config import load_config
    cfg = load_config(job.config, [*job.opts, "OUTPUT_DIR", job.folder, "TRAIN.RESUME", "True"])
    cfg.defrost()
    if cfg.TEST.EVAL_PERIOD <= 0:
        cfg.TEST.EVAL_PERIOD = cfg.TRAIN.MAX_ITER  # one evaluation, after the last iteration
    if job.threads > 0 and cfg.NUM_THREADS == 0:
        cfg.NUM_THREADS = job.threads
    cfg.TEST.BEST_METRIC = job.metric
    cfg.freeze()
    return cfg


def final_metrics(cfg, trainer):
    """The scalar metrics of the evaluation after the last iteration: this run's own (every process has them), else
    the one a previous attempt wrote (a resumed run that had finished training), else one made now.

    Every process takes the same branch: the evaluation is collective, and a process that evaluated alone would wait
    for the others forever. So the file is read by the main process only and its content shared; the others could
    not rely on seeing it anyway, since the main process writes it after the evaluation's last collective.
    """
    from ..engine.hooks import PeriodicEvaluator
    from ..utils import comm
    latest = trainer.latest_evaluation
    if latest is not None and latest[0] == cfg.TRAIN.MAX_ITER:
        metrics = json.loads(json.dumps(latest[1], default=float))  # numpy scalars -> floats, as the file has them
    else:
        path = os.path.join(cfg.OUTPUT_DIR, "eval", "training", f"iter_{cfg.TRAIN.MAX_ITER:07d}", "metrics.json")
        metrics = comm.all_gather_object(read_json(path) if comm.is_main_process() else None)[0]
        if metrics is None:
            trainer.done = trainer.max_iter = cfg.TRAIN.MAX_ITER
            PeriodicEvaluator(cfg).evaluate(trainer)
            metrics = json.loads(json.dumps(trainer.latest_evaluation[1], default=float))
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def train_and_evaluate(job):
    """The job: train (resuming what a previous attempt saved), evaluate after the last iteration, write
    result.json; returns the result. With ``job.trial``, reports each evaluation to Optuna and stops when pruned."""
    from ..engine import Trainer
    from ..engine.hooks import EarlyStop
    from ..utils import comm
    from ..utils.logger import setup_logger
    if job.distributed:
        import submitit
        # RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT from SLURM; every task keeps every GPU of the node (the
        # trainer selects LOCAL_RANK, as under torchrun)
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    cfg = job_config(job)
    setup_logger(cfg.OUTPUT_DIR, rank=int(os.environ.get("RANK", 0)))
    logger.info("Ablation run %s: %s", job.label, " ".join(job.opts) or "no overrides")
    trainer = Trainer(cfg)
    if job.trial:
        from .search import OptunaReporter
        trainer.hooks.append(OptunaReporter(job.trial, job.metric))
    status = "finished"
    try:
        trainer.train()
        metrics = final_metrics(cfg, trainer)
    except EarlyStop as stop:
        status, metrics = "pruned", {}
        logger.info("%s", stop)
    result = {**job.record, "status": status, "iteration": trainer.done, "metric": job.metric,
              "metrics": metrics, "value": metrics.get(job.metric)}
    if comm.is_main_process():
        write_json_atomically(os.path.join(job.folder, RESULT_RECORD), result)
    comm.shutdown()  # every process of a distributed job got here, then the process group goes
    return result


# ---- submission ------------------------------------------------------------------------------------------------------

@dataclass
class ExecutorOptions:
    """How jobs run: ``cluster`` local (processes of this machine), slurm or debug (in this process, one after
    another); ``jobs`` at most this many at once; ``tasks_per_job`` processes forming one distributed run (default:
    one per GPU of ``gpus_per_job``, else 1; on CPU they use gloo); SLURM's partition, CPUs per task; the time limit
    in minutes. On SLURM ``jobs`` bounds the jobs queued at once."""
    cluster: str = "local"
    jobs: int = 1
    partition: str = ""
    gpus_per_job: int = 0
    tasks_per_job: int = 0
    cpus_per_task: int = 0
    time_min: int = 24 * 60
    extra: dict = field(default_factory=dict)  # further submitit parameters (e.g. slurm_account)

    @property
    def tasks(self):
        return self.tasks_per_job or max(1, self.gpus_per_job)


CLUSTERS = ("local", "slurm", "debug")


def make_executor(options, folder):
    """A submitit executor writing its job files (pickles, logs) under ``folder``."""
    import submitit
    if options.cluster not in CLUSTERS:
        raise ValueError(f"Unknown cluster '{options.cluster}'; choose one of {', '.join(CLUSTERS)}.")
    if options.cluster == "local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=options.time_min, tasks_per_node=options.tasks,
                                   gpus_per_node=options.gpus_per_job)
        return executor
    if options.cluster == "debug":
        return submitit.DebugExecutor(folder)
    executor = submitit.AutoExecutor(folder, cluster="slurm")
    executor.update_parameters(**slurm_parameters(options))
    return executor


def slurm_parameters(options):
    """submitit parameters of a SLURM job: one node, its tasks (a distributed run; one per GPU by default), time
    limit, partition, CPUs per task, and ``options.extra`` (e.g. ``slurm_account``)."""
    params = {"timeout_min": options.time_min, "nodes": 1, "tasks_per_node": options.tasks, "name": "ablate"}
    if options.gpus_per_job:
        params["gpus_per_node"] = options.gpus_per_job
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.cpus_per_task:
        params["cpus_per_task"] = options.cpus_per_task
    return {**params, **options.extra}


class JobPool:
    """At most ``capacity`` submitit jobs running at once (local processes, or SLURM jobs in the queue)."""

    def __init__(self, executor, capacity):
        self.executor, self.capacity, self.running = executor, max(1, capacity), []

    def has_room(self):
        return len(self.running) < self.capacity

    def submit(self, job):
        self.running.append((job, self.executor.submit(train_and_evaluate, job)))

    def wait_any(self, poll_s=1.0):
        """Block until at least one job ends; return [(job, result or None, error or None)] of those that ended."""
        while self.running:
            ended = [(j, h) for j, h in self.running if h.done()]
            if ended:
                outcomes = []
                for job, handle in ended:
                    self.running.remove((job, handle))
                    try:  # a distributed SLURM job has one result per task: rank 0's
                        outcomes.append((job, handle.results()[0], None))
                    except Exception as e:  # FailedJobError (the job raised), UncompletedJobError (killed, timeout)
                        outcomes.append((job, None, e))
                return outcomes
            time.sleep(poll_s)
        return []


def describe_outcome(job, result, error):
    """One line for the console: the run, its metric or why it failed (and where its log is)."""
    if error is not None:
        text = str(error).strip()
        last = text.splitlines()[-1] if text else type(error).__name__
        return f"{job.label} FAILED: {last} (log: {os.path.join(job.folder, 'log.txt')})"
    value = result.get("value")
    return f"{job.label}: " + (f"{job.metric} {value:.2f}" if value is not None else str(result.get("status")))


def make_job(spec, folder, variant, overrides, seed, **record):
    """The RunJob of one run of ``spec``: its base config, shared overrides, the variant's ``overrides``, SEED."""
    record = {"variant": variant, "seed": seed, "overrides": overrides, "base": spec.base, "opts": spec.opts,
              **record}
    opts = [*spec.shared_opts(), *[x for k, v in overrides.items() for x in (k, format_value(v))], "SEED", str(seed)]
    config = os.path.abspath(spec.base) if os.path.exists(spec.base) else spec.base  # a shipped config's name
    return RunJob(folder=os.path.abspath(folder), config=config, opts=opts, record=record, metric=spec.metric)


def run_jobs_for_spec(spec, out):
    """The RunJob of every variant x seed of ``spec``, in order (variants outer, seeds inner)."""
    return [make_job(spec, os.path.join(out, v.name, f"seed{seed}"), v.name, v.overrides, seed,
                     reference=spec.reference_variant())
            for v in spec.variants for seed in range(spec.seeds)]


def run_ablation(spec, out, options, log=print, command=""):
    """Train and evaluate every variant x seed of ``spec`` under ``out`` (done runs skipped, unfinished ones
    resumed); returns the number of runs that failed. Writes ``out/ablation.yaml`` (the spec, for the report)."""
    import yaml
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "ablation.yaml"), "w") as f:
        yaml.safe_dump({**spec.to_dict(), "mode": "grid", "command": command}, f, sort_keys=False)
    jobs = run_jobs_for_spec(spec, out)
    todo = [j for j in jobs if not is_done(j.folder)]
    log(f"{len(jobs)} runs ({len(spec.variants)} variants x {spec.seeds} seeds): {len(jobs) - len(todo)} done, "
        f"{len(todo)} to run on '{options.cluster}' ({options.jobs} at once); folders under {out}")
    prepare_jobs(todo, options)
    pool, failed, ended, t0 = JobPool(make_executor(options, os.path.join(out, "submitit")), options.jobs), 0, 0, \
        time.time()
    pending = list(todo)
    while pending or pool.running:
        while pending and pool.has_room():
            pool.submit(pending.pop(0))
        for job, result, error in pool.wait_any():
            ended += 1
            failed += error is not None
            log(f"[{ended}/{len(todo)}] {describe_outcome(job, result, error)} ({time.time() - t0:.0f} s)")
    return failed


def prepare_jobs(jobs, options):
    """Create the run folders with their ablation.json; set how each job runs: local jobs running side by side share
    this process's CPUs among all their processes (runtime.choose_num_threads; unless NUM_THREADS or OMP_NUM_THREADS
    decide), a job running alone chooses its threads when it starts, from the load it finds; jobs of several tasks
    are distributed runs."""
    from ..config import load_config
    from ..utils.runtime import choose_num_threads
    for job in jobs:
        os.makedirs(job.folder, exist_ok=True)
        write_json_atomically(os.path.join(job.folder, ABLATION_RECORD), job.record)
        processes = options.jobs * options.tasks  # one job at a time measures the machine's load itself
        if options.cluster == "local" and processes > 1 and not os.environ.get("OMP_NUM_THREADS"):
            cfg = load_config(job.config, job.opts)
            if cfg.NUM_THREADS == 0:
                job.threads = choose_num_threads(cfg, local_processes=processes)[0]
        job.distributed = options.cluster != "debug" and options.tasks > 1
