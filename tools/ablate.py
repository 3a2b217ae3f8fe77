"""Ablations: train and evaluate every variant x seed of a grid, then write the comparison.

    python tools/ablate.py --grid FILE [--cfg BASE] [--vary KEY V1 V2 ...] [--seeds N] [--out DIR] [--jobs K]
                           [--cluster local|slurm|debug] [--partition P] [--gpus-per-job G] [--tasks-per-job N]
                           [--time-min T] [--slurm-param KEY=VALUE ...]
                           [--search optuna --trials N [--storage URL] [--study NAME]] [KEY VALUE ...]
    python tools/ablate.py --report DIR [--report-out FILE.md]

Each run is a submitit job (local processes by default, ``--jobs`` at once; SLURM with ``--cluster slurm``) in
``OUT/<variant>/seed<k>/``; a rerun skips the runs that are done and resumes the others. The grid file's format is
in segmentation/ablation/spec.py; ``--vary`` adds a grid axis, trailing ``KEY VALUE`` pairs override every run. At
the end (and with ``--report DIR`` from the run folders alone) ``report.md``, ``results.csv`` and the plots are
written. Exit status: 0 when every run succeeded, 1 when one failed (the report covers the others).
"""
import argparse
import os
import re
import shlex
import sys

from _common import run

from segmentation.ablation import load_spec, run_ablation, write_report
from segmentation.ablation.jobs import CLUSTERS, ExecutorOptions


def parser():
    p = argparse.ArgumentParser(description="Run a grid of config overrides x seeds and compare them.")
    p.add_argument("--grid", metavar="FILE", help="grid file (YAML: base, opts, seeds, metric, variants, grid, "
                                                  "search)")
    p.add_argument("--cfg", "--config-file", dest="cfg", metavar="FILE", help="base config (overrides 'base:')")
    p.add_argument("--vary", nargs="+", action="append", default=[], metavar="KEY V",
                   help="a grid axis: a config key and its values, e.g. --vary LOSS.OFFSET.WEIGHT 0.01 0.02 (the "
                        "values end at the next option or config key)")
    p.add_argument("--seeds", type=int, help="seeds per variant (SEED 0 .. N-1; default: the grid file's, or 1)")
    p.add_argument("--metric", help="validation metric compared and optimised (default: the grid file's, or PQ)")
    p.add_argument("--out", metavar="DIR", help="run folders (default output/ablations/<grid or config name>)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (local processes, or SLURM array parallelism)")
    p.add_argument("--cluster", choices=CLUSTERS, default="local", help="where jobs run (debug: in this process)")
    p.add_argument("--partition", default="", help="SLURM partition")
    p.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per job (one process each: a distributed run)")
    p.add_argument("--tasks-per-job", type=int, default=0, help="processes per job forming one distributed run "
                                                                "(default: one per GPU, else 1; gloo on CPU)")
    p.add_argument("--cpus-per-task", type=int, default=0, help="SLURM CPUs per task")
    p.add_argument("--time-min", type=int, default=24 * 60, help="time limit of a job in minutes")
    p.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a further sbatch parameter, e.g. account=lab or qos=high (repeatable)")
    p.add_argument("--search", choices=("optuna",), help="search the grid file's 'search:' space instead of the grid")
    p.add_argument("--trials", type=int, default=20, help="--search: trials to end (a rerun continues the study)")
    p.add_argument("--storage", help="--search: Optuna storage URL (default sqlite:///OUT/optuna.db)")
    p.add_argument("--study", help="--search: study name (default: the name of OUT)")
    p.add_argument("--report", metavar="DIR", help="only (re)write the report of the runs under DIR")
    p.add_argument("--report-out", metavar="FILE", help="where report.md goes (default OUT/report.md; the "
                                                        "plots and results.csv go to a folder beside it)")
    p.add_argument("--debug", action="store_true", help="print the traceback of an error")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="overrides of every run, as KEY VALUE pairs")
    return p


CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*")


def split_vary(argv):
    """(argv without the --vary groups, the groups): a group's values end at the next option or config key, so
    that trailing KEY VALUE overrides may follow it."""
    rest, groups, i = [], [], 0
    while i < len(argv):
        if argv[i] != "--vary":
            rest.append(argv[i])
            i += 1
            continue
        group, i = argv[i + 1:i + 2], i + 2
        while i < len(argv) and not argv[i].startswith("--") and not CONFIG_KEY.fullmatch(argv[i]):
            group.append(argv[i])
            i += 1
        groups.append(group)
    return rest, groups


def slurm_extra(params):
    """submitit's slurm_* parameters from KEY=VALUE words."""
    extra = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm-param takes KEY=VALUE (e.g. account=lab), got '{item}'.")
        extra[f"slurm_{key.replace('-', '_')}"] = value
    return extra


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    rest, vary = split_vary(argv)
    args = parser().parse_args(rest)
    args.vary = vary
    if args.report:
        print(f"Wrote {write_report(args.report, args.report_out)}")
        return 0
    if not args.grid and not args.cfg:
        parser().error("give --grid FILE and/or --cfg FILE (or --report DIR)")
    spec = load_spec(args.grid, base=args.cfg, vary=args.vary, seeds=args.seeds, metric=args.metric, opts=args.opts)
    name = os.path.splitext(os.path.basename(args.grid or args.cfg))[0]
    out = args.out or os.path.join("output", "ablations", name)
    options = ExecutorOptions(cluster=args.cluster, jobs=args.jobs, partition=args.partition,
                              gpus_per_job=args.gpus_per_job, tasks_per_job=args.tasks_per_job,
                              cpus_per_task=args.cpus_per_task,
                              time_min=args.time_min, extra=slurm_extra(args.slurm_param))
    command = " ".join(["python tools/ablate.py", *(shlex.quote(a) for a in argv)])
    if args.search:
        from segmentation.ablation.search import run_search
        _, failed = run_search(spec, out, options, args.trials, args.storage, args.study, command=command)
    else:
        failed = run_ablation(spec, out, options, command=command)
    print(f"Wrote {write_report(out, args.report_out)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(main))
