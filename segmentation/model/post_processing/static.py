"""Panoptic-DeepLab decoding with static shapes, for export (TorchScript, ONNX).

The same rules and the same panoptic maps as ``get_panoptic_segmentation`` (tested equal), written without
data-dependent shapes or host reads: the centres are the ``max_centers`` best NMS peaks (invalid ones masked, not
removed), every per-instance table has ``max_centers + 1`` rows, and branches are ``torch.where``. The grouping
compares every pixel with every candidate centre, so it holds an [H * W, max_centers] float32 tensor (at
1024x2048 and 200 centres: 1.6 GB); lower ``max_centers`` (POST_PROCESSING.TOP_K_INSTANCE) for large inputs.
"""
import torch
import torch.nn.functional as F


def static_centers(heat, threshold, nms_kernel, max_centers):
    """Candidate centres of a heatmap [H, W]: (flat indices long [K] in row-major order, valid bool [K]).

    Valid centres are exactly ``find_instance_center``'s (threshold, NMS, and the strict rule when ``max_centers``
    peaks or more exist: keep those above the ``max_centers``-th score), listed first in row-major order.
    """
    height, width = heat.shape
    k = min(max_centers, height * width)
    heat = torch.where(heat > threshold, heat, torch.full_like(heat, -1.0))
    pooled = F.max_pool2d(heat[None, None], nms_kernel, stride=1, padding=(nms_kernel - 1) // 2)[0, 0]
    peaks = torch.where(heat == pooled, heat, torch.full_like(heat, -1.0)).reshape(-1)
    scores, index = torch.topk(peaks, k)
    valid = scores > 0
    kth = scores[k - 1]
    valid = valid & ((kth <= 0) | (scores > kth))  # at least k peaks: the original keeps those above the k-th
    order = torch.argsort(torch.where(valid, index, index + height * width))  # valid first, row-major
    return index[order], valid[order]


def static_panoptic(logits, heat, offsets, thing_table, label_divisor, stuff_area, void_label, threshold,
                    nms_kernel, max_centers):
    """Panoptic ids [H, W] (long) of one image from logits [C, H, W], heatmap [H, W] and offsets [2, H, W].

    ``thing_table``: bool [C], True for thing classes. The result equals ``get_panoptic_segmentation`` with
    ``top_k=max_centers``.
    """
    num_classes, height, width = logits.shape
    semantic = torch.argmax(logits, dim=0)
    is_thing = thing_table[semantic]
    index, valid = static_centers(heat, threshold, nms_kernel, max_centers)
    k = index.shape[0]

    # grouping: nearest valid centre of each pixel's vote (first on ties), as group_pixels
    ys = torch.arange(height, device=logits.device, dtype=offsets.dtype)[:, None].expand(height, width)
    xs = torch.arange(width, device=logits.device, dtype=offsets.dtype)[None, :].expand(height, width)
    vote_y, vote_x = (ys + offsets[0]).reshape(-1, 1), (xs + offsets[1]).reshape(-1, 1)
    cy, cx = (index // width).to(offsets.dtype)[None], (index % width).to(offsets.dtype)[None]
    dy, dx = cy - vote_y, cx - vote_x
    dist = torch.where(valid[None], dy * dy + dx * dx, torch.full_like(dy, float("inf")))
    nearest = torch.argmin(dist, dim=1).reshape(height, width) + 1
    instance = torch.where(is_thing & valid.any(), nearest, torch.zeros_like(nearest))

    # majority class of every instance (row 0: pixels outside instances, whose counts are the stuff areas)
    counted = is_thing | (instance == 0)
    bins = torch.where(counted, instance * num_classes + semantic, torch.full_like(semantic, (k + 1) * num_classes))
    votes = torch.zeros((k + 1) * num_classes + 1, dtype=torch.long, device=logits.device)
    votes = votes.scatter_add(0, bins.reshape(-1), torch.ones_like(bins).reshape(-1))[:-1].view(k + 1, num_classes)
    ins_class = torch.argmax(votes, dim=1)
    present = votes.sum(1) > 0
    present = present & (torch.arange(k + 1, device=logits.device) > 0)
    one_hot = F.one_hot(ins_class, num_classes) * present[:, None].long()
    rank = one_hot.cumsum(0).gather(1, ins_class[:, None])[:, 0]
    new_ids = ins_class * label_divisor + rank

    keep = (votes[0] >= stuff_area) & ~thing_table
    classes = torch.arange(num_classes, device=logits.device)
    stuff_ids = torch.where(keep, classes * label_divisor, torch.full_like(classes, void_label))
    stuff_px = instance == 0
    panoptic = torch.where(stuff_px, stuff_ids[semantic], torch.full_like(semantic, void_label))
    return torch.where(is_thing & (instance > 0), new_ids[instance], panoptic)
