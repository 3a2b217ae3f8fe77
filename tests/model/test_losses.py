import math

import pytest
import torch

from segmentation.config import get_default_config
from segmentation.model.loss import LOSS_REGISTRY, DeepLabCE, OhemCE, RegularCE, WeightedL1, WeightedMSE


def _logits():
    # 1 image, 2 classes, 1x4 pixels; class-0 logit 0, class-1 logit x: CE(label 1) = log(1 + e^-x)
    x = torch.tensor([0.0, 1.0, 2.0, -1.0])
    return torch.stack([torch.zeros(4), x]).view(1, 2, 1, 4), x


def test_regular_ce_ignores_and_weights():
    logits, x = _logits()
    labels = torch.tensor([[[1, 1, 255, 0]]])
    weights = torch.tensor([[[1.0, 3.0, 1.0, 1.0]]])
    ce = [math.log(1 + math.exp(-x[0].item())), math.log(1 + math.exp(-x[1].item())),
          math.log(1 + math.exp(x[3].item()))]
    expected = (ce[0] + 3 * ce[1] + ce[2]) / 3
    assert RegularCE(ignore_label=255)(logits, labels, weights).item() == pytest.approx(expected, rel=1e-6)


def test_hard_pixel_mining_top_k_over_batch():
    cfg = get_default_config().LOSS.SEMANTIC
    cfg.TOP_K_PERCENT = 0.5
    logits, x = _logits()
    labels = torch.tensor([[[1, 1, 1, 1]]])
    ce = torch.log1p(torch.exp(-x))
    assert DeepLabCE(cfg)(logits, labels).item() == pytest.approx(ce.topk(2).values.mean().item(), rel=1e-6)
    cfg.TOP_K_PERCENT = 1.0
    labels = torch.tensor([[[1, 1, 255, 1]]])  # ignored pixels count as zeros in the mean
    assert DeepLabCE(cfg)(logits, labels).item() == pytest.approx((ce.sum() - ce[2]).item() / 4, rel=1e-6)


def test_ohem_keeps_pixels_below_threshold():
    cfg = get_default_config().LOSS.SEMANTIC
    cfg.THRESHOLD, cfg.MIN_KEPT = 0.7, 1
    logits, x = _logits()
    labels = torch.tensor([[[1, 1, 1, 1]]])
    prob = torch.sigmoid(x)  # [0.5, 0.73, 0.88, 0.27]
    keep = prob < 0.7
    ce = torch.log1p(torch.exp(-x))
    assert OhemCE(cfg)(logits, labels).item() == pytest.approx(ce[keep].mean().item(), rel=1e-6)
    cfg.MIN_KEPT = 3  # the 3rd smallest probability (0.73) raises the threshold
    keep = prob < prob.sort().values[3]
    assert OhemCE(cfg)(logits, labels).item() == pytest.approx(ce[keep].mean().item(), rel=1e-6)


def test_weighted_center_and_offset_losses():
    pred = torch.tensor([[[[1.0, 2.0]]]])
    target = torch.zeros(1, 1, 1, 2)
    w = torch.tensor([[[1.0, 0.0]]])
    assert WeightedMSE()(pred, target, w).item() == 1.0
    assert WeightedMSE()(pred, target, torch.zeros(1, 1, 2)).item() == 0.0
    off = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    # weights expanded to both channels: (1 + 3) / 2
    assert WeightedL1()(off, torch.zeros_like(off), w).item() == 2.0


@pytest.mark.parametrize("name", LOSS_REGISTRY.names())
def test_every_registered_loss_is_finite_and_differentiable(name):
    cfg = get_default_config().LOSS.SEMANTIC
    cfg.TOP_K_PERCENT, cfg.MIN_KEPT = 0.3, 5
    loss = LOSS_REGISTRY.get(name)(cfg, 255)
    if name in ("mse", "l1"):
        pred = torch.randn(2, 2, 4, 4, requires_grad=True)
        value = loss(pred, torch.randn(2, 2, 4, 4), torch.ones(2, 4, 4))
    else:
        pred = torch.randn(2, 3, 4, 4, requires_grad=True)
        value = loss(pred, torch.randint(0, 3, (2, 4, 4)), torch.ones(2, 4, 4))
    value.backward()
    assert torch.isfinite(value) and pred.grad.abs().sum() > 0
