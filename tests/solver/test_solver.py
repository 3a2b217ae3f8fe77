import pytest
import torch

from segmentation.config import get_default_config
from segmentation.solver import (
    LR_SCHEDULER_REGISTRY,
    OPTIMIZER_REGISTRY,
    build_lr_scheduler,
    build_optimizer,
    get_param_groups,
)


def _model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))


def test_param_groups_follow_the_original():
    cfg = get_default_config()
    s = cfg.SOLVER
    s.BASE_LR, s.BIAS_LR_FACTOR, s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM, s.WEIGHT_DECAY_BIAS = 0.1, 2.0, 1e-4, 0.0, 1e-5
    groups = {g["name"]: g for g in get_param_groups(_model(), s)}
    assert len(groups["norm"]["params"]) == 2 and groups["norm"]["weight_decay"] == 0.0
    assert len(groups["bias"]["params"]) == 2 and groups["bias"]["lr"] == pytest.approx(0.2)
    assert groups["bias"]["weight_decay"] == 1e-5
    assert len(groups["weight"]["params"]) == 2 and groups["weight"]["lr"] == 0.1


def _lrs(name, **solver):
    cfg = get_default_config()
    cfg.TRAIN.MAX_ITER = 10
    cfg.SOLVER.LR_SCHEDULER_NAME = name
    cfg.SOLVER.BASE_LR = 1.0
    cfg.SOLVER.BIAS_LR_FACTOR = 1.0
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    opt = build_optimizer(cfg, _model())
    sched = build_lr_scheduler(cfg, opt)
    out = []
    for _ in range(10):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_poly_with_linear_warmup():
    lrs = _lrs("WarmupPolyLR", WARMUP_ITERS=2, WARMUP_FACTOR=0.5, POLY_LR_POWER=1.0)
    assert lrs[0] == pytest.approx(0.5 * 1.0)
    assert lrs[1] == pytest.approx((0.5 * 0.5 + 0.5) * 0.9)
    assert lrs[5] == pytest.approx(0.5)


def test_multistep_and_cosine_and_constant_ending():
    lrs = _lrs("WarmupMultiStepLR", WARMUP_ITERS=0, STEPS=(3, 6), GAMMA=0.1)
    assert lrs[2] == pytest.approx(1.0) and lrs[3] == pytest.approx(0.1) and lrs[6] == pytest.approx(0.01)
    lrs = _lrs("WarmupCosineLR", WARMUP_ITERS=0)
    assert lrs[0] == pytest.approx(1.0) and lrs[5] == pytest.approx(0.5)
    lrs = _lrs("WarmupPolyLR", WARMUP_ITERS=0, POLY_LR_POWER=1.0, POLY_LR_CONSTANT_ENDING=0.35)
    assert lrs[9] == pytest.approx(0.35) and lrs[5] == pytest.approx(0.5)


@pytest.mark.parametrize("name", LR_SCHEDULER_REGISTRY.names())
def test_every_scheduler_is_positive_and_non_increasing_after_warmup(name):
    lrs = _lrs(name, WARMUP_ITERS=0, STEPS=(5,))
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] >= 0


def test_unknown_optimizer_and_warmup_are_errors():
    cfg = get_default_config()
    cfg.SOLVER.OPTIMIZER = "lamb"
    with pytest.raises(KeyError, match="adam, adamw, sgd"):
        build_optimizer(cfg, _model())
    cfg.SOLVER.OPTIMIZER = "sgd"
    cfg.SOLVER.WARMUP_METHOD = "cubic"
    with pytest.raises(ValueError, match="linear"):
        build_lr_scheduler(cfg, build_optimizer(cfg, _model()))


@pytest.mark.parametrize("clip_type", ["value", "norm"])
def test_gradient_clipping(clip_type):
    from segmentation.solver import clip_gradients
    cfg = get_default_config()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.5
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, -4.0, 0.1, 0.0])
    clip_gradients(cfg, [p])
    if clip_type == "value":
        assert p.grad.tolist() == pytest.approx([0.5, -0.5, 0.1, 0.0])
    else:  # per parameter, L2 norm 5.0 scaled to 0.5
        assert p.grad.norm().item() == pytest.approx(0.5, rel=1e-4)
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "both"
    with pytest.raises(ValueError, match="value, norm"):
        clip_gradients(cfg, [p])


def _first_step_sgd(p, g, lr, wd, s):
    return p - lr * (g + wd * p)  # momentum buffer starts at the gradient


def _first_step_adam(p, g, lr, wd, s):
    g = g + wd * p  # L2 penalty added to the gradient; the bias-corrected first step is g / (|g| + eps)
    return p - lr * g / (g.abs() + s.ADAM_EPS)


def _first_step_adamw(p, g, lr, wd, s):
    return p * (1 - lr * wd) - lr * g / (g.abs() + s.ADAM_EPS)  # decoupled weight decay


FIRST_STEP = {"sgd": _first_step_sgd, "adam": _first_step_adam, "adamw": _first_step_adamw}


def test_every_registered_optimizer_has_its_first_step_tested():
    assert sorted(FIRST_STEP) == sorted(OPTIMIZER_REGISTRY.names())


@pytest.mark.parametrize("name", OPTIMIZER_REGISTRY.names())
def test_every_optimizer_takes_the_config_and_the_parameter_groups(name):
    """SOLVER.OPTIMIZER builds it with the config's hyperparameters, and each parameter group (weights, biases, norm
    layers) moves by its own learning rate and weight decay: one step on known gradients, against the formula."""
    cfg = get_default_config()
    s = cfg.SOLVER
    s.OPTIMIZER, s.BASE_LR, s.BIAS_LR_FACTOR = name, 0.1, 2.0
    s.MOMENTUM, s.ADAM_BETAS, s.ADAM_EPS = 0.5, (0.8, 0.9), 1e-3
    s.WEIGHT_DECAY, s.WEIGHT_DECAY_NORM, s.WEIGHT_DECAY_BIAS = 0.01, 0.0, 0.02
    model = _model()
    torch.manual_seed(0)
    for p in model.parameters():
        p.data.normal_()
        p.grad = torch.randn_like(p)
    before = {n: (p.detach().clone(), p.grad.clone()) for n, p in model.named_parameters()}
    opt = build_optimizer(cfg, model)
    assert type(opt).__name__.lower() == name
    if name == "sgd":
        assert all(g["momentum"] == 0.5 for g in opt.param_groups)
    else:
        assert all(g["betas"] == (0.8, 0.9) and g["eps"] == 1e-3 for g in opt.param_groups)
    opt.step()
    spec = {"0.weight": (0.1, 0.01), "0.bias": (0.2, 0.02), "1.weight": (0.1, 0.0), "1.bias": (0.1, 0.0),
            "2.weight": (0.1, 0.01), "2.bias": (0.2, 0.02)}  # BatchNorm's bias is a norm-layer parameter
    for n, p in model.named_parameters():
        p0, g = (t.double() for t in before[n])
        expected = FIRST_STEP[name](p0, g, *spec[n], s).float()
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-6, msg=f"{name}: {n}")
