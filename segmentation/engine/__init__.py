"""Training loop and evaluation loop."""
from .evaluator import evaluate, format_metrics_table, predict
from .trainer import Trainer, resolve_device, save_run_record

__all__ = ["Trainer", "evaluate", "format_metrics_table", "predict", "resolve_device", "save_run_record"]
