"""The original repository's target rules written plainly (numpy, one full-image mask per segment, one window per
centre): the oracle of the vectorized ``PanopticTargetGenerator`` in tests and the baseline of
tools/benchmark_targets.py. Slow at 1024x2048 (a full-image comparison per segment); never used for training.

Numerics follow this repository's convention (float64 centres of mass, each offset the float64 difference rounded
once to float32); the original, run under numpy 1's value-based casting, subtracted in float32 (1 ulp apart at
most).
"""
import numpy as np

from .target_transforms import gaussian_kernel


def reference_targets(id_map, segments, thing_list, *, ignore_label, sigma=8, ignore_stuff_in_offset=False,
                      small_instance_area=0, small_instance_weight=1, ignore_crowd_in_semantic=False):
    """The targets of one annotation (``id_map`` [H, W] int, ``segments`` dicts with id, category_id, iscrowd) as
    numpy arrays with the keys and shapes of ``PanopticTargetGenerator``."""
    height, width = id_map.shape
    semantic = np.full((height, width), ignore_label, dtype=np.int64)
    foreground = np.zeros((height, width), dtype=np.int64)
    center = np.zeros((1, height, width), dtype=np.float32)
    offset = np.zeros((2, height, width), dtype=np.float32)
    semantic_weights = np.ones((height, width), dtype=np.float32)
    center_weights = np.zeros((height, width), dtype=np.float32)
    offset_weights = np.zeros((height, width), dtype=np.float32)
    center_points = []
    g = gaussian_kernel(sigma).numpy().astype(np.float32)
    for seg in segments:
        cat, crowd = seg["category_id"], bool(seg.get("iscrowd", 0))
        mask = id_map == seg["id"]
        semantic[mask] = ignore_label if ignore_crowd_in_semantic and crowd else cat
        if cat in thing_list:
            foreground[mask] = 1
        if not crowd:
            center_weights[mask] = 1
            if not ignore_stuff_in_offset or cat in thing_list:
                offset_weights[mask] = 1
        if cat not in thing_list:
            continue
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        if len(ys) < small_instance_area:
            semantic_weights[mask] = small_instance_weight
        cy, cx = ys.mean(), xs.mean()
        center_points.append([cy, cx])
        y, x = int(cy), int(cx)
        if 0 <= x < width and 0 <= y < height:
            ul = int(np.round(x - 3 * sigma - 1)), int(np.round(y - 3 * sigma - 1))
            br = int(np.round(x + 3 * sigma + 2)), int(np.round(y + 3 * sigma + 2))
            c, d = max(0, -ul[0]), min(br[0], width) - ul[0]
            a, b = max(0, -ul[1]), min(br[1], height) - ul[1]
            cc, dd = max(0, ul[0]), min(br[0], width)
            aa, bb = max(0, ul[1]), min(br[1], height)
            center[0, aa:bb, cc:dd] = np.maximum(center[0, aa:bb, cc:dd], g[a:b, c:d])
        offset[0, ys, xs] = (cy - ys).astype(np.float32)
        offset[1, ys, xs] = (cx - xs).astype(np.float32)
    return {"semantic": semantic, "foreground": foreground, "center": center, "center_points": center_points,
            "offset": offset, "semantic_weights": semantic_weights, "center_weights": center_weights,
            "offset_weights": offset_weights}
