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


def colorize_instances(ids):
    """uint8 [H, W, 3]: a fixed pseudo-random colour per positive id, black for 0 and negative ids."""
    ids = np.asarray(ids).astype(np.int64)
    rgb = np.stack([(ids * 97 + 53) % 200, (ids * 157 + 101) % 200, (ids * 211 + 29) % 200], -1) + 55
    return np.where(ids[..., None] > 0, rgb, 0).astype(np.uint8)


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


def flow_to_color(offset, max_norm=None):
    """uint8 [H, W, 3] colouring of (y, x) offsets: hue = direction, brightness = length (relative to max_norm)."""
    import cv2
    off = np.asarray(offset, dtype=np.float32)
    norm = np.sqrt(off[0] ** 2 + off[1] ** 2)
    max_norm = max(float(norm.max()) if max_norm is None else max_norm, 1e-6)
    hue = ((np.arctan2(off[0], off[1]) + np.pi) / (2 * np.pi) * 179).astype(np.uint8)
    hsv = np.stack([hue, np.full_like(hue, 255), np.clip(norm / max_norm * 255, 0, 255).astype(np.uint8)], -1)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def heatmap_to_color(heat):
    """uint8 [H, W, 3] of a [H, W] map in [0, 1] through a perceptual colour map."""
    import cv2
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
    return cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1].copy()
