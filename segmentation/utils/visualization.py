"""Colouring of semantic and panoptic maps, and comparison panels."""
import numpy as np
from PIL import Image


def colorize_semantic(semantic, metadata):
    """uint8 [H, W, 3] from train ids [H, W] (ignore: black)."""
    return metadata.palette()[np.clip(np.asarray(semantic), 0, 255).astype(np.int64)]


def colorize_panoptic(panoptic, metadata):
    """uint8 [H, W, 3]: class colour, shifted per instance so that touching instances differ; void is black."""
    pan = np.asarray(panoptic).astype(np.int64)
    cls = pan // metadata.label_divisor
    ins = pan % metadata.label_divisor
    color = metadata.palette()[np.clip(cls, 0, 255)].astype(np.int64)
    # deterministic per-instance jitter in [-60, 60], none for stuff (instance 0)
    jitter = ((ins[..., None] * np.array([37, 73, 109])) % 121 - 60) * (ins[..., None] > 0)
    return np.clip(color + jitter, 0, 255).astype(np.uint8)


def denormalize(image, mean, std):
    """uint8 [H, W, 3] from a normalised float tensor [3, H, W]."""
    img = image.detach().cpu().float().numpy().transpose(1, 2, 0)
    img = img * np.asarray(std) + np.asarray(mean)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def save_panels(path, panels):
    """Save images [H, W, 3] side by side, separated by a white 4-pixel gap."""
    h = max(p.shape[0] for p in panels)
    gap = np.full((h, 4, 3), 255, np.uint8)
    row = []
    for p in panels:
        if p.shape[0] < h:
            p = np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)))
        row += [p, gap]
    Image.fromarray(np.concatenate(row[:-1], axis=1)).save(path)
