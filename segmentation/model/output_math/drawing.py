"""How OM variables are drawn: a picture per variable chosen by its name and shape (the demo's ``--dump``), and the
TensorBoard grid of DEBUG.OM_VARIABLES. The generic colour maps are in ``utils/visualization.py``."""
import numpy as np
import torch

from ...utils.visualization import (
    colorize_instances,
    colorize_panoptic,
    colorize_semantic,
    denormalize,
    flow_to_color,
    heatmap_to_color,
)
from .build import compose
from .core import OutputMath
from .wrapper import BASE_FORMULATION, raw_batch


def colorize_variable(name, value, metadata, cfg):
    """uint8 [H, W, 3] picture of the first image of an OM variable, chosen by its name and shape."""
    if not isinstance(value, torch.Tensor) or value.dim() < 3:
        raise ValueError(f"OM variable '{name}' is not a per-pixel map (got {type(value).__name__}); only maps "
                         f"[N, H, W] or [N, C, H, W] can be drawn.")
    v = value[0]
    v = v.detach().float().cpu() if isinstance(v, torch.Tensor) else v
    if name == "image":
        return denormalize(v, cfg.DATASET.MEAN, cfg.DATASET.STD)
    if v.dtype == torch.bool:
        v = v.float()
    if name.startswith("offset") or name == "votes_pred":
        return flow_to_color(v.numpy())
    if name.startswith("center"):
        return heatmap_to_color(v.reshape(v.shape[-2:]).numpy())
    if name.startswith("panoptic"):
        return colorize_panoptic(v.long().numpy(), metadata)
    if name.startswith("instance") or name == "closest_centroid_truth":
        return colorize_instances(v.long().numpy())
    if name.startswith("semantic"):
        if v.dim() == 3:  # logits or probabilities
            v = v.argmax(0)
        return colorize_semantic(v.long().numpy(), metadata)
    arr = v.reshape(v.shape[-2:]).numpy()
    span = float(arr.max() - arr.min()) or 1.0
    return heatmap_to_color((arr - arr.min()) / span)


def om_variable_grid(cfg, out, batch, metadata):
    """One row of DEBUG.OM_VARIABLES pictures for the first image of a batch: through the OM when the model has one,
    else through the base formulation built over the output dict (so that every variable can be drawn)."""

    om = out
    if not isinstance(out, OutputMath):
        om = compose(BASE_FORMULATION)(raw_batch(out, batch["image"], batch), config=cfg, metadata=metadata)
    panels = []
    with torch.no_grad():
        for name in cfg.DEBUG.OM_VARIABLES:
            value = batch["image"] if name == "image" else om[name]
            panels.append(colorize_variable(name, value, metadata, cfg))
    h = max(p.shape[0] for p in panels)
    return np.concatenate([np.pad(p, ((0, h - p.shape[0]), (0, 4), (0, 0)), constant_values=255) for p in panels],
                          axis=1)
