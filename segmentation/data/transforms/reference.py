"""The original repository's target rules written plainly, in its structure: a loop over segments in which every
use of a segment's mask compares the whole id map again (semantic, foreground, centre and offset weights, the
pixel list, the small-instance weights), offsets read from full-image coordinate grids, one Gaussian window per
centre. It is the oracle of the vectorized ``PanopticTargetGenerator`` in tests and the baseline of
tools/benchmark_targets.py; slow at 1024x2048, never used for training.

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
    semantic = np.zeros_like(id_map, dtype=np.int64) + ignore_label
    foreground = np.zeros_like(id_map, dtype=np.int64)
    center = np.zeros((1, height, width), dtype=np.float32)
    offset = np.zeros((2, height, width), dtype=np.float32)
    y_coord = (np.ones_like(id_map, dtype=np.float32).T * np.arange(height, dtype=np.float32)).T
    x_coord = np.ones_like(id_map, dtype=np.float32) * np.arange(width, dtype=np.float32)
    semantic_weights = np.ones_like(id_map, dtype=np.float32)
    center_weights = np.zeros_like(id_map, dtype=np.float32)
    offset_weights = np.zeros_like(id_map, dtype=np.float32)
    center_points = []
    g = gaussian_kernel(sigma).numpy().astype(np.float32)
    for seg in segments:
        cat, crowd = seg["category_id"], bool(seg.get("iscrowd", 0))
        if not (ignore_crowd_in_semantic and crowd):
            semantic[id_map == seg["id"]] = cat
        if cat in thing_list:
            foreground[id_map == seg["id"]] = 1
        if not crowd:
            center_weights[id_map == seg["id"]] = 1
            if not ignore_stuff_in_offset or cat in thing_list:
                offset_weights[id_map == seg["id"]] = 1
        if cat not in thing_list:
            continue
        mask_index = np.where(id_map == seg["id"])
        if len(mask_index[0]) == 0:
            continue
        if len(mask_index[0]) < small_instance_area:
            semantic_weights[id_map == seg["id"]] = small_instance_weight
        cy, cx = np.mean(mask_index[0]), np.mean(mask_index[1])
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
        offset[(np.zeros_like(mask_index[0]), *mask_index)] = cy - y_coord[mask_index]
        offset[(np.ones_like(mask_index[0]), *mask_index)] = cx - x_coord[mask_index]
    return {"semantic": semantic, "foreground": foreground, "center": center, "center_points": center_points,
            "offset": offset, "semantic_weights": semantic_weights, "center_weights": center_weights,
            "offset_weights": offset_weights}
