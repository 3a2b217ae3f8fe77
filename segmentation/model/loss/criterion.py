"""Loss modules and their registry (``LOSS_REGISTRY``), with the original repository's reductions."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...utils.registry import Registry

LOSS_REGISTRY = Registry(
    "LOSS_REGISTRY",
    contract=("A class built as cls(cfg_group, ignore_label) from LOSS.SEMANTIC / LOSS.CENTER / LOSS.OFFSET; "
              "forward(pred, target, weights=None) returns a scalar tensor."),
    config_key="LOSS.*.NAME",
)


def safe_div(num, den):
    """num / den, or num (which is then 0) where den is 0; no host synchronisation."""
    return num / torch.where(den > 0, den, torch.ones_like(den))


@LOSS_REGISTRY.register("cross_entropy")
class RegularCE(nn.Module):
    """Per-pixel cross-entropy times the pixel weights, averaged over the non-ignored pixels."""

    def __init__(self, cfg=None, ignore_label=255):
        super().__init__()
        self.ignore_label = ignore_label

    def forward(self, logits, labels, weights=None):
        pixel = F.cross_entropy(logits, labels, ignore_index=self.ignore_label, reduction="none")
        if weights is not None:
            pixel = pixel * weights
        valid = (labels != self.ignore_label).sum().to(pixel.dtype)
        return safe_div(pixel.sum(), valid)


@LOSS_REGISTRY.register("ohem")
class OhemCE(nn.Module):
    """Online hard example mining: average over the non-ignored pixels whose true-class probability is below
    ``max(THRESHOLD, p_k)``, p_k being the MIN_KEPT-th smallest such probability."""

    def __init__(self, cfg, ignore_label=255):
        super().__init__()
        self.ignore_label = ignore_label
        self.threshold = cfg.THRESHOLD
        self.min_kept = max(1, cfg.MIN_KEPT)

    def forward(self, logits, labels, weights=None):
        pixel = F.cross_entropy(logits, labels, ignore_index=self.ignore_label, reduction="none").reshape(-1)
        if weights is not None:
            pixel = pixel * weights.reshape(-1)
        flat_labels = labels.reshape(-1)
        mask = flat_labels != self.ignore_label
        with torch.no_grad():
            prob = F.softmax(logits, dim=1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
            prob = prob.gather(1, torch.where(mask, flat_labels, 0)[:, None])[:, 0]
            prob = torch.where(mask, prob, torch.full_like(prob, float("inf")))
            sorted_prob = prob.sort().values
            n_valid = mask.sum()
            kth_index = torch.minimum(torch.as_tensor(self.min_kept, device=prob.device), n_valid - 1).clamp(min=0)
            kth = sorted_prob[kth_index]
            keep = mask & (prob < torch.clamp(kth, min=self.threshold))
        return safe_div((pixel * keep).sum(), keep.sum().to(pixel.dtype))


@LOSS_REGISTRY.register("hard_pixel_mining")
class DeepLabCE(nn.Module):
    """Weighted per-pixel cross-entropy; the mean of the TOP_K_PERCENT largest values over the whole batch
    (ignored pixels count as zeros, as in the original)."""

    def __init__(self, cfg, ignore_label=255):
        super().__init__()
        self.ignore_label = ignore_label
        self.top_k_percent = cfg.TOP_K_PERCENT
        if not 0 < self.top_k_percent <= 1:
            raise ValueError(f"LOSS.SEMANTIC.TOP_K_PERCENT must be in (0, 1], got {self.top_k_percent}.")

    def forward(self, logits, labels, weights=None):
        pixel = F.cross_entropy(logits, labels, ignore_index=self.ignore_label, reduction="none").reshape(-1)
        if weights is not None:
            pixel = pixel * weights.reshape(-1)
        if self.top_k_percent == 1.0:
            return pixel.mean()
        k = max(1, int(self.top_k_percent * pixel.numel()))
        return torch.topk(pixel, k).values.mean()


@LOSS_REGISTRY.register("mse")
class WeightedMSE(nn.Module):
    """Squared error times the weights, summed and divided by the sum of the (channel-expanded) weights."""

    def __init__(self, cfg=None, ignore_label=255):
        super().__init__()

    def forward(self, pred, target, weights=None):
        loss = (pred - target) ** 2
        if weights is None:
            return loss.mean()
        w = weights.reshape(weights.shape[0], 1, *weights.shape[-2:]).expand_as(loss)
        return safe_div((loss * w).sum(), w.sum())


@LOSS_REGISTRY.register("l1")
class WeightedL1(nn.Module):
    """Absolute error times the weights, summed and divided by the sum of the (channel-expanded) weights."""

    def __init__(self, cfg=None, ignore_label=255):
        super().__init__()

    def forward(self, pred, target, weights=None):
        loss = (pred - target).abs()
        if weights is None:
            return loss.mean()
        w = weights.reshape(weights.shape[0], 1, *weights.shape[-2:]).expand_as(loss)
        return safe_div((loss * w).sum(), w.sum())


def build_loss(group_cfg, ignore_label=255):
    """The loss module named by ``group_cfg.NAME`` (LOSS.SEMANTIC, LOSS.CENTER or LOSS.OFFSET)."""
    return LOSS_REGISTRY.get(group_cfg.NAME)(group_cfg, ignore_label)
