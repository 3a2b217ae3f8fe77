"""Optimizers with the original's parameter groups, and warmup learning-rate schedulers."""
import math
from bisect import bisect_right

import torch
import torch.nn as nn

from ..utils.registry import Registry

OPTIMIZER_REGISTRY = Registry(
    "OPTIMIZER_REGISTRY", contract="A function (param_groups, solver_cfg) -> torch.optim.Optimizer.",
    config_key="SOLVER.OPTIMIZER")
LR_SCHEDULER_REGISTRY = Registry(
    "LR_SCHEDULER_REGISTRY", contract="A class (optimizer, cfg) -> torch.optim.lr_scheduler.LRScheduler, stepped "
    "once per iteration.", config_key="SOLVER.LR_SCHEDULER_NAME")

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.InstanceNorm2d)


def get_param_groups(model, solver):
    """One group per parameter kind: norm-layer parameters (WEIGHT_DECAY_NORM), biases (BASE_LR * BIAS_LR_FACTOR,
    WEIGHT_DECAY_BIAS), everything else (BASE_LR, WEIGHT_DECAY)."""
    groups = {"norm": [], "bias": [], "weight": []}
    seen = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            kind = "norm" if isinstance(module, _NORM_TYPES) else "bias" if name == "bias" else "weight"
            groups[kind].append(p)
    spec = {"norm": (solver.BASE_LR, solver.WEIGHT_DECAY_NORM),
            "bias": (solver.BASE_LR * solver.BIAS_LR_FACTOR, solver.WEIGHT_DECAY_BIAS),
            "weight": (solver.BASE_LR, solver.WEIGHT_DECAY)}
    return [{"params": ps, "lr": spec[k][0], "weight_decay": spec[k][1], "name": k} for k, ps in groups.items() if ps]


@OPTIMIZER_REGISTRY.register("sgd")
def _sgd(groups, s):
    return torch.optim.SGD(groups, lr=s.BASE_LR, momentum=s.MOMENTUM)


@OPTIMIZER_REGISTRY.register("adam")
def _adam(groups, s):
    return torch.optim.Adam(groups, lr=s.BASE_LR, betas=tuple(s.ADAM_BETAS), eps=s.ADAM_EPS)


@OPTIMIZER_REGISTRY.register("adamw")
def _adamw(groups, s):
    return torch.optim.AdamW(groups, lr=s.BASE_LR, betas=tuple(s.ADAM_BETAS), eps=s.ADAM_EPS)


def build_optimizer(cfg, model):
    return OPTIMIZER_REGISTRY.get(cfg.SOLVER.OPTIMIZER)(get_param_groups(model, cfg.SOLVER), cfg.SOLVER)


WARMUP_METHODS = ("constant", "linear")


def warmup_factor(method, it, warmup_iters, warmup_factor):
    """Multiplier of the learning rate at iteration ``it`` during warmup (1 after it)."""
    if it >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    alpha = it / warmup_iters
    return warmup_factor * (1 - alpha) + alpha


class _WarmupScheduler(torch.optim.lr_scheduler.LRScheduler):
    def __init__(self, optimizer, cfg):
        s = cfg.SOLVER  # plain values only: the scheduler's state dict must load with weights_only=True
        self.max_iters = int(cfg.TRAIN.MAX_ITER)
        self.warmup = (str(s.WARMUP_METHOD), int(s.WARMUP_ITERS), float(s.WARMUP_FACTOR))
        if self.warmup[0] not in WARMUP_METHODS:
            raise ValueError(f"Unknown SOLVER.WARMUP_METHOD '{self.warmup[0]}'; valid: {', '.join(WARMUP_METHODS)}.")
        self.power, self.ending = float(s.POLY_LR_POWER), float(s.POLY_LR_CONSTANT_ENDING)
        self.steps, self.gamma = [int(v) for v in s.STEPS], float(s.GAMMA)
        if self.steps != sorted(self.steps):
            raise ValueError(f"SOLVER.STEPS must be increasing, got {self.steps}.")
        super().__init__(optimizer)

    def factor(self, it):
        raise NotImplementedError

    def get_lr(self):
        it = self.last_epoch
        f = warmup_factor(self.warmup[0], it, self.warmup[1], self.warmup[2]) * self.factor(it)
        return [base * f for base in self.base_lrs]


@LR_SCHEDULER_REGISTRY.register("WarmupPolyLR")
class WarmupPolyLR(_WarmupScheduler):
    """(1 - it / MAX_ITER) ** POLY_LR_POWER, held at POLY_LR_CONSTANT_ENDING once it falls below it."""

    def factor(self, it):
        f = math.pow(1.0 - min(it, self.max_iters) / self.max_iters, self.power)
        return self.ending if self.ending > 0 and f < self.ending else f


@LR_SCHEDULER_REGISTRY.register("WarmupMultiStepLR")
class WarmupMultiStepLR(_WarmupScheduler):
    """GAMMA ** (number of STEPS milestones passed)."""

    def factor(self, it):
        return self.gamma ** bisect_right(self.steps, it)


@LR_SCHEDULER_REGISTRY.register("WarmupCosineLR")
class WarmupCosineLR(_WarmupScheduler):
    """Half a cosine from 1 to 0 over MAX_ITER."""

    def factor(self, it):
        return 0.5 * (1.0 + math.cos(math.pi * min(it, self.max_iters) / self.max_iters))


def build_lr_scheduler(cfg, optimizer):
    return LR_SCHEDULER_REGISTRY.get(cfg.SOLVER.LR_SCHEDULER_NAME)(optimizer, cfg)


def clip_gradients(cfg, parameters):
    c = cfg.SOLVER.CLIP_GRADIENTS
    if not c.ENABLED:
        return
    params = [p for p in parameters if p.grad is not None]
    if c.CLIP_TYPE == "value":
        torch.nn.utils.clip_grad_value_(params, c.CLIP_VALUE)
    elif c.CLIP_TYPE == "norm":  # per parameter, as the original
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], c.CLIP_VALUE, c.NORM_TYPE)
    else:
        raise ValueError(f"Unknown SOLVER.CLIP_GRADIENTS.CLIP_TYPE '{c.CLIP_TYPE}'; valid: value, norm.")
