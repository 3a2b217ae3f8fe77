"""Optimizers and learning-rate schedulers."""
from .build import (
    LR_SCHEDULER_REGISTRY,
    OPTIMIZER_REGISTRY,
    WarmupCosineLR,
    WarmupMultiStepLR,
    WarmupPolyLR,
    build_lr_scheduler,
    build_optimizer,
    clip_gradients,
    get_param_groups,
)

__all__ = ["LR_SCHEDULER_REGISTRY", "OPTIMIZER_REGISTRY", "WarmupCosineLR", "WarmupMultiStepLR", "WarmupPolyLR",
           "build_lr_scheduler", "build_optimizer", "clip_gradients", "get_param_groups"]
