"""Ablations: a grid (or an Optuna search) of config overrides x seeds, each run trained and evaluated as a job of
submitit (local processes or SLURM), resumable from its run folder, and a report drawn from the run folders alone.

``spec`` reads the grid, ``jobs`` runs one training + evaluation and submits them, ``search`` drives Optuna,
``report`` writes report.md, results.csv and the plots, ``stats`` holds the confidence intervals.
"""
from .jobs import RunJob, run_ablation, train_and_evaluate
from .report import write_report
from .spec import AblationSpec, SpecError, load_spec

__all__ = ["AblationSpec", "RunJob", "SpecError", "load_spec", "run_ablation", "train_and_evaluate", "write_report"]
