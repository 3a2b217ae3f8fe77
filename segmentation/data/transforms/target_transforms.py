"""Panoptic-DeepLab training targets from a panoptic annotation, vectorized.

``PanopticTargetGenerator`` keeps the original repository's constructor and outputs and reproduces its semantics
exactly (float centre of mass, a 6*sigma+3 Gaussian window placed at the truncated centre and max-combined, crowd
segments getting centres/offsets/small-instance weights but zero centre/offset loss weights, zero offsets outside
things). Instead of one full-image mask per segment it gathers per-segment tables with one index map, so the cost
does not grow with the number of segments.
"""
import math

import numpy as np
import torch


def gaussian_kernel(sigma, dtype=torch.float64):
    """Tensor [6*sigma+3, 6*sigma+3]: unnormalised Gaussian with std ``sigma`` (pixels) peaking at 1 in the middle."""
    size = 6 * sigma + 3
    x = torch.arange(0, size, 1, dtype=torch.float64)
    y = x[:, None]
    x0 = y0 = 3 * sigma + 1
    return torch.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2)).to(dtype)


def draw_center_heatmap(centers_y, centers_x, height, width, sigma, valid=None):
    """Max-combined Gaussian windows, as the original draws them (one ``scatter_reduce`` for all windows).

    Args:
        centers_y, centers_x: float tensors [K] or [N, K], centres in pixels (windows sit at their truncation).
        valid: optional bool tensor shaped like the centres; invalid centres draw nothing (static shapes, no sync).
    Returns:
        float32 tensor [1, H, W] for 1-D centres, [N, 1, H, W] for 2-D centres.
    """
    batched = centers_y.dim() == 2
    if not batched:
        centers_y, centers_x = centers_y[None], centers_x[None]
        valid = None if valid is None else valid[None]
    n, k = centers_y.shape
    device = centers_y.device
    g = gaussian_kernel(sigma).to(device=device, dtype=torch.float32)
    size = g.shape[0]
    y = centers_y.detach().to(torch.float64).trunc()
    x = centers_x.detach().to(torch.float64).trunc()
    ul_y, ul_x = torch.round(y - 3 * sigma - 1).long(), torch.round(x - 3 * sigma - 1).long()
    br_y, br_x = torch.round(y + 3 * sigma + 2).long(), torch.round(x + 3 * sigma + 2).long()
    d = torch.arange(size, device=device)
    yy = ul_y[..., None, None] + d[:, None]  # [N, K, size, 1]
    xx = ul_x[..., None, None] + d[None, :]  # [N, K, 1, size]
    inside = (y >= 0) & (x >= 0) & (y < height) & (x < width)  # the original skips centres outside the image
    inside = (inside if valid is None else inside & valid)[..., None, None]
    # the window's rows and columns tested apart; one full-size combination
    ok = ((yy >= 0) & (yy < height) & (yy < br_y[..., None, None]) & inside) & \
        ((xx >= 0) & (xx < width) & (xx < br_x[..., None, None]))
    heat = _max_of_windows(yy, xx, ok, g.expand(n, k, size, size), height, width)
    return heat if batched else heat[0]


def _max_of_windows(yy, xx, ok, values, height, width):
    """[N, 1, H, W] float32: the maximum over windows of ``values`` [N, K, S, S] placed at rows ``yy`` [N, K, S, 1]
    and columns ``xx`` [N, K, 1, S] where ``ok``; 0 where no window reaches (one ``scatter_reduce``)."""
    n = yy.shape[0]
    plane = height * width
    dump = n * plane  # out-of-window entries land in a dump slot that is dropped afterwards
    image = torch.arange(n, device=yy.device).view(n, 1, 1, 1) * plane
    flat = ((image + yy * width) + xx).masked_fill_(~ok, dump)
    heat = torch.zeros(dump + 1, dtype=torch.float32, device=yy.device)
    heat.scatter_reduce_(0, flat.reshape(-1), values.reshape(-1), reduce="amax")
    return heat[:dump].view(n, 1, height, width)


def draw_adaptive_center_heatmap(centers_y, centers_x, height, width, sigma, max_sigma, valid=None):
    """``draw_center_heatmap`` with one standard deviation per centre: ``sigma`` [N, K] float (pixels, at most
    ``max_sigma``); the window of a centre spans ceil(3 * sigma + 1) pixels on each side of its truncation. For an
    integer sigma shared by every centre the heatmap is draw_center_heatmap's bit for bit.

    Returns float32 [N, 1, H, W]; static shapes (the windows are sized by ``max_sigma``), no host synchronisation.
    """
    device = centers_y.device
    reach = int(math.ceil(3 * max_sigma + 1))
    d = torch.arange(-reach, reach + 1, device=device)
    y = centers_y.detach().to(torch.float64).trunc()
    x = centers_x.detach().to(torch.float64).trunc()
    sigma = sigma.detach().to(torch.float64)
    radius = torch.ceil(3 * sigma + 1)[..., None, None]  # [N, K, 1, 1]
    dy, dx = d.view(-1, 1).to(torch.float64), d.view(1, -1).to(torch.float64)
    g = torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma[..., None, None] ** 2)).to(torch.float32)  # [N, K, S, S]
    yy = y.long()[..., None, None] + d.view(-1, 1)
    xx = x.long()[..., None, None] + d.view(1, -1)
    ok = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width) & (dy.abs() <= radius) & (dx.abs() <= radius)
    inside = (y >= 0) & (x >= 0) & (y < height) & (x < width)
    ok = ok & (inside if valid is None else inside & valid)[..., None, None]
    return _max_of_windows(yy, xx, ok, g, height, width)


def panoptic_targets(seg_index, seg_category, seg_is_thing, seg_is_crowd, *, ignore_label, sigma=8,
                     ignore_stuff_in_offset=False, small_instance_area=0, small_instance_weight=1,
                     ignore_crowd_in_semantic=False):
    """Targets of one image from a segment-index map and per-segment tables.

    Args:
        seg_index: long tensor [H, W]; index into the segment tables, -1 for pixels of no listed segment (void).
        seg_category: long tensor [S], train id of each segment.
        seg_is_thing, seg_is_crowd: bool tensors [S].
    Returns:
        dict with semantic (long [H, W]), foreground (long [H, W]), center (float32 [1, H, W]), center_points
        (float64 [K, 2] (y, x) centres of mass of the thing segments present, in segment order), offset (float32
        [2, H, W], (y, x) pixels to the centre), semantic_weights, center_weights, offset_weights (float32 [H, W]).
    """
    return _targets(seg_index + 1, seg_category, seg_is_thing, seg_is_crowd, ignore_label=ignore_label, sigma=sigma,
                    ignore_stuff_in_offset=ignore_stuff_in_offset, small_instance_area=small_instance_area,
                    small_instance_weight=small_instance_weight, ignore_crowd_in_semantic=ignore_crowd_in_semantic)


def _targets(entry, seg_category, seg_is_thing, seg_is_crowd, *, ignore_label, sigma, ignore_stuff_in_offset,
             small_instance_area, small_instance_weight, ignore_crowd_in_semantic):
    """``panoptic_targets`` from ``entry`` [H, W] long: 1 + the segment's index, 0 for unlisted pixels.

    Every per-pixel output is one gather from a small table: per segment (classes, weights), or per (segment, row)
    and (segment, column) for the offsets, whose float64 differences are rounded to float32 in the table; the same
    (segment, row) and (segment, column) keys give the exact integer coordinate sums of the centres of mass through
    two bincounts. About a dozen passes over the pixels, none in float64.
    """
    device = entry.device
    height, width = entry.shape
    n_seg = seg_category.numel()
    if entry.dtype not in (torch.int32, torch.int64) or (n_seg + 1) * max(height, width) >= 2 ** 31:
        entry = entry.long()
    flat = entry.reshape(-1)
    rows = torch.arange(height, device=device, dtype=entry.dtype)  # int32 indices: less memory traffic
    cols = torch.arange(width, device=device, dtype=entry.dtype)
    key_y = torch.add(rows.view(height, 1), entry, alpha=height).view(-1)  # entry * H + row
    key_x = torch.add(cols.view(1, width), entry, alpha=width).view(-1)  # entry * W + column
    per_row = torch.bincount(key_y, minlength=(n_seg + 1) * height).view(n_seg + 1, height)
    per_col = torch.bincount(key_x, minlength=(n_seg + 1) * width).view(n_seg + 1, width)
    count = per_row.sum(1)
    # integer coordinate sums, exact, divided in float64: numpy's mean of the coordinates bit for bit
    mean_y = (per_row * rows.long()).sum(1).to(torch.float64) / count.clamp(min=1)
    mean_x = (per_col * cols.long()).sum(1).to(torch.float64) / count.clamp(min=1)

    def table(values, unlisted):
        return torch.cat([torch.as_tensor([unlisted], dtype=values.dtype, device=device), values])

    def gather(values, index=flat, shape=(height, width)):
        return values.reshape(-1).index_select(0, index).view(shape)

    thing = seg_is_thing & (count[1:] > 0)
    category = seg_category.long()
    sem_values = category
    if ignore_crowd_in_semantic:
        sem_values = torch.where(seg_is_crowd, torch.full_like(category, ignore_label), category)
    offset_sel = ~seg_is_crowd & seg_is_thing if ignore_stuff_in_offset else ~seg_is_crowd
    small = thing & (count[1:] < small_instance_area)
    is_thing = table(thing, False)[:, None]
    # per (segment, row) / (segment, column): the float64 difference rounded once to float32, 0 off things
    table_y = torch.where(is_thing, mean_y[:, None] - rows.to(torch.float64), 0.0).to(torch.float32)
    table_x = torch.where(is_thing, mean_x[:, None] - cols.to(torch.float64), 0.0).to(torch.float32)
    offset = torch.empty(2, height, width, dtype=torch.float32, device=device)
    torch.index_select(table_y.view(-1), 0, key_y, out=offset[0].view(-1))
    torch.index_select(table_x.view(-1), 0, key_x, out=offset[1].view(-1))
    center = draw_center_heatmap(mean_y[1:], mean_x[1:], height, width, sigma, valid=thing)
    return {
        "semantic": gather(table(sem_values, ignore_label)),
        "foreground": gather(table(seg_is_thing.long(), 0)),
        "center": center,
        "center_points": torch.stack([mean_y[1:], mean_x[1:]], dim=1)[thing],
        "offset": offset,
        "semantic_weights": gather(table(torch.where(small, float(small_instance_weight), 1.0), 1.0)),
        "center_weights": gather(table((~seg_is_crowd).float(), 0.0)),
        "offset_weights": gather(table(offset_sel.float(), 0.0)),
    }


def segment_index_map(id_map, segment_ids):
    """Long tensor [H, W]: position of each pixel's id in ``segment_ids`` (any order), -1 if absent."""
    return segment_entry_map(id_map, segment_ids).long() - 1


# ids below this bound are looked up in a table (one gather); larger ones (COCO's 24-bit RGB ids) are searched
_LOOKUP_IDS = 1 << 22


def segment_entry_map(id_map, segment_ids):
    """Integer tensor [H, W] (int32 when the ids can be looked up in a table, else long): 1 + the position of each
    pixel's id in ``segment_ids`` (any order), 0 if absent."""
    ids = torch.as_tensor(np.asarray(segment_ids, dtype=np.int64)).reshape(-1)
    id_map = torch.as_tensor(id_map)
    if id_map.dtype not in (torch.int32, torch.int64):
        id_map = id_map.long()
    if ids.numel() == 0:
        return torch.zeros(id_map.shape, dtype=torch.int32)
    low, high = int(min(ids.min(), id_map.min())), int(max(ids.max(), id_map.max()))
    if low >= 0 and high < _LOOKUP_IDS:
        lookup = torch.zeros(high + 1, dtype=torch.int32)
        lookup[ids] = torch.arange(1, ids.numel() + 1, dtype=torch.int32)
        return lookup.index_select(0, id_map.reshape(-1)).view(id_map.shape)
    id_map = id_map.long()
    sorted_ids, order = torch.sort(ids)
    pos = torch.searchsorted(sorted_ids, id_map).clamp(max=ids.numel() - 1)
    return torch.where(sorted_ids[pos] == id_map, order[pos] + 1, torch.zeros_like(pos))


class PanopticTargetGenerator:
    """Generates Panoptic-DeepLab training targets from a panoptic annotation (the original's interface).

    Args:
        ignore_label: semantic label of void (and of crowd with ``ignore_crowd_in_semantic``).
        rgb2id: function turning the annotation passed to ``__call__`` into an integer id map [H, W].
        thing_list: train ids of thing classes.
        sigma: std of the centre Gaussian (pixels).
        ignore_stuff_in_offset: offset weights only on (non-crowd) thing pixels.
        small_instance_area, small_instance_weight: semantic weight of thing segments smaller than the area.
        ignore_crowd_in_semantic: crowd pixels get ``ignore_label`` in the semantic target.
    """

    def __init__(self, ignore_label, rgb2id, thing_list, sigma=8, ignore_stuff_in_offset=False,
                 small_instance_area=0, small_instance_weight=1, ignore_crowd_in_semantic=False):
        self.ignore_label = ignore_label
        self.rgb2id = rgb2id
        self.thing_list = list(thing_list)
        self.sigma = sigma
        self.ignore_stuff_in_offset = ignore_stuff_in_offset
        self.small_instance_area = small_instance_area
        self.small_instance_weight = small_instance_weight
        self.ignore_crowd_in_semantic = ignore_crowd_in_semantic

    def __call__(self, panoptic, segments):
        """Targets for one annotation.

        Args:
            panoptic: annotation understood by ``rgb2id`` (e.g. an RGB-encoded PNG array).
            segments: list of dicts with ``id``, ``category_id`` (train id) and ``iscrowd``.
        Returns:
            the dict of ``panoptic_targets`` with ``center_points`` as a list of [y, x] floats, as the original.
        """
        id_map = torch.as_tensor(np.ascontiguousarray(self.rgb2id(panoptic)))
        ids = [s["id"] for s in segments]
        category = torch.as_tensor([s["category_id"] for s in segments], dtype=torch.long)
        is_thing = torch.as_tensor([s["category_id"] in self.thing_list for s in segments], dtype=torch.bool)
        is_crowd = torch.as_tensor([bool(s.get("iscrowd", 0)) for s in segments], dtype=torch.bool)
        out = _targets(
            segment_entry_map(id_map, ids), category, is_thing, is_crowd, ignore_label=self.ignore_label,
            sigma=self.sigma, ignore_stuff_in_offset=self.ignore_stuff_in_offset,
            small_instance_area=self.small_instance_area, small_instance_weight=self.small_instance_weight,
            ignore_crowd_in_semantic=self.ignore_crowd_in_semantic)
        out["center_points"] = out["center_points"].tolist()
        return out


def encode_panoptic(id_map, segments, metadata, distinct_crowd=False):
    """Train-id encoding [H, W] (long) of a segment-id map: class * divisor + instance (see DatasetMetadata).

    Thing instances of each class are numbered 1, 2, ... in the order of ``segments``; stuff and crowd segments get
    instance 0; pixels of unlisted ids are void (``metadata.void_label``).

    ``distinct_crowd`` (the OM's PAN_ONLY training batches): crowd segments are numbered like instances, so that
    two crowd segments of one class stay two segments (COCO has several per image), and the function returns
    ``(encoding, crowd_table)`` with ``crowd_table`` a bool [num_classes * divisor + 1] marking their ids.
    """
    div = metadata.label_divisor
    codes, per_class, crowd_codes = [], {}, []
    for s in segments:
        c = int(s["category_id"])
        crowd = bool(s.get("iscrowd", 0))
        if c in metadata.thing_ids and (not crowd or distinct_crowd):
            per_class[c] = per_class.get(c, 0) + 1
            if per_class[c] >= div:
                raise ValueError(f"More than {div - 1} segments of class {c} in one image: raise "
                                 f"DATASET.LABEL_DIVISOR above {div}.")
            codes.append(c * div + per_class[c])
            if crowd:
                crowd_codes.append(codes[-1])
        else:
            codes.append(c * div)
    entry = segment_entry_map(id_map, [s["id"] for s in segments])
    table = torch.as_tensor([metadata.void_label] + codes, dtype=torch.long)  # entry 0: pixels of unlisted ids
    encoded = table.index_select(0, entry.reshape(-1)).view(entry.shape)
    if not distinct_crowd:
        return encoded
    crowd_table = torch.zeros(metadata.num_classes * div + 1, dtype=torch.bool)
    crowd_table[torch.as_tensor(crowd_codes, dtype=torch.long)] = True
    return encoded, crowd_table
