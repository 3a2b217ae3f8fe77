"""Training loop and evaluation loop."""
from .evaluator import evaluate, format_metrics_table
from .inference import network_outputs, predict, predict_tta, tta_enabled
from .trainer import Trainer, configure_runtime, resolve_device, save_run_record

__all__ = ["Trainer", "configure_runtime", "evaluate", "format_metrics_table", "network_outputs", "predict",
           "predict_tta", "resolve_device", "save_run_record", "tta_enabled"]
