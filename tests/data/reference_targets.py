"""An independent, deliberately naive implementation of the original target semantics (one mask per segment)."""
import numpy as np


def reference_targets(id_map, segments, thing_list, ignore_label=255, sigma=8, ignore_stuff_in_offset=False,
                      small_instance_area=0, small_instance_weight=1, ignore_crowd_in_semantic=False):
    h, w = id_map.shape
    semantic = np.full((h, w), ignore_label, np.int64)
    foreground = np.zeros((h, w), np.int64)
    center = np.zeros((1, h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    sem_w = np.ones((h, w), np.float32)
    ctr_w = np.zeros((h, w), np.float32)
    off_w = np.zeros((h, w), np.float32)
    points = []
    size = 6 * sigma + 3
    gx = np.arange(size, dtype=np.float64)
    g = np.exp(-((gx[None, :] - (3 * sigma + 1)) ** 2 + (gx[:, None] - (3 * sigma + 1)) ** 2) / (2 * sigma ** 2))
    for seg in segments:
        mask = id_map == seg["id"]
        cat, crowd, thing = seg["category_id"], bool(seg["iscrowd"]), seg["category_id"] in thing_list
        if not (ignore_crowd_in_semantic and crowd):
            semantic[mask] = cat
        if thing:
            foreground[mask] = 1
        if not crowd:
            ctr_w[mask] = 1
            if thing or not ignore_stuff_in_offset:
                off_w[mask] = 1
        if not thing or not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        if len(ys) < small_instance_area:
            sem_w[mask] = small_instance_weight
        cy, cx = ys.mean(), xs.mean()
        points.append([cy, cx])
        y, x = int(cy), int(cx)
        for dy in range(size):
            for dx in range(size):
                py, px = y - 3 * sigma - 1 + dy, x - 3 * sigma - 1 + dx
                if 0 <= py < h and 0 <= px < w:
                    center[0, py, px] = max(center[0, py, px], np.float32(g[dy, dx]))
        offset[0][mask] = cy - ys
        offset[1][mask] = cx - xs
    return dict(semantic=semantic, foreground=foreground, center=center, center_points=points, offset=offset,
                semantic_weights=sem_w, center_weights=ctr_w, offset_weights=off_w)
