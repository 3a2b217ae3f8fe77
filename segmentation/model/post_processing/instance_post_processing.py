"""Panoptic-DeepLab decoding as pure tensor functions, with the original repository's signatures and outputs.

Vectorized: no Python loop over instances or classes. Grouping first looks each thing pixel's vote up in a grid of
cells that lie wholly inside one centre's Voronoi region (with a margin larger than float32 rounding), and evaluates
squared distances to every centre only for the few votes elsewhere, in chunks of pixels, so memory stays bounded (no
K x H x W distance tensor).
"""
import math

import torch
import torch.nn.functional as F

from .semantic_post_processing import get_semantic_segmentation

# Side of a cell of the grouping grid, pixels (a power of 2: a vote's cell is an exact product). At 1024x2048 with
# ~60 centres 16 sent ~5 % of the votes to the full evaluation for a 1 ms table; 8 sent 0.2 % for a 6 ms table.
_CELL = 16
# Largest (cells x centres) table of the grid, elements (float64: 32 MiB); beyond it the cell doubles.
_MAX_TABLE = 1 << 22
# Elements of one (pixels x centres) distance chunk: 1 MiB of float32, small enough to stay in a CPU's L2 cache
# (4x fewer elements were slower from the per-chunk overhead, 4x more from memory traffic).
_CHUNK_ELEMENTS = 1 << 18


def find_instance_center(ctr_hmp, threshold=0.1, nms_kernel=3, top_k=None):
    """Centre locations from a heatmap: threshold, max-pool NMS, then the original's strict top-k rule.

    Args:
        ctr_hmp: float tensor [1, H, W] (or [1, 1, H, W]), the centre heatmap of one image.
        threshold: values at or below it are not centres.
        nms_kernel: max-pool window; a centre must equal the maximum of its window.
        top_k: if not None and at least ``top_k`` centres remain, keep those strictly greater than the k-th score.
    Returns:
        long tensor [K, 2] of (y, x) centres in row-major order.
    """
    if ctr_hmp.size(0) != 1:
        raise ValueError(f"Only batch size 1 is supported, got a heatmap of shape {tuple(ctr_hmp.shape)}.")
    heat = ctr_hmp.reshape(ctr_hmp.shape[-2:])
    if ctr_hmp.numel() != heat.numel():
        raise ValueError(f"The centre heatmap must be [1, H, W] or [1, 1, H, W], got {tuple(ctr_hmp.shape)}.")
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"POST_PROCESSING.NMS_KERNEL must be a positive odd number, got {nms_kernel}.")
    heat = torch.where(heat > threshold, heat, torch.full_like(heat, -1.0))
    pooled = _window_max(_window_max(heat, nms_kernel, 0), nms_kernel, 1)
    ctr_all = torch.nonzero((heat == pooled) & (heat > 0))
    if top_k is None or ctr_all.size(0) < top_k:
        return ctr_all
    # the k-th score among the centres is the k-th of the whole suppressed map (every other value there is -1)
    scores = heat[ctr_all[:, 0], ctr_all[:, 1]]
    kth = torch.topk(scores, top_k).values[-1]
    return ctr_all[scores > kth]


def _window_max(x, kernel, dim):
    """Maximum of ``x`` over the centred window of odd size ``kernel`` along ``dim`` (max-pooling with stride 1 and
    -inf padding): windows of 1, 2, 4, ... elements are combined, log2(kernel) elementwise maxima instead of a
    pooling kernel that reads ``kernel`` values per output (k x k pooling is two such passes)."""
    pad = (kernel - 1) // 2
    size = x.size(dim)
    pads = [0, 0] * (x.dim() - dim - 1) + [pad, pad]
    m = F.pad(x, pads, value=float("-inf"))  # window of 1 starting at every padded position
    width = 1
    while 2 * width <= kernel:
        n = m.size(dim) - width
        m = torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, width, n))
        width *= 2
    rest = kernel - width  # two overlapping windows of ``width`` cover ``kernel`` elements
    return torch.maximum(m.narrow(dim, 0, size), m.narrow(dim, rest, size))


def _nearest_center(ys, xs, off_y, off_x, ctr):
    """Index (0-based) of the centre closest to each vote (y + off_y, x + off_x); first index on ties.

    Squared distances are computed in chunks of pixels small enough to stay in cache, in place: this pass over
    (pixels x centres) is the cost of the whole decoding.
    """
    loc_y, loc_x = ys.to(off_y.dtype) + off_y, xs.to(off_x.dtype) + off_x
    cy, cx = ctr[:, 0].to(off_y.dtype), ctr[:, 1].to(off_x.dtype)
    step = max(1, _CHUNK_ELEMENTS // max(1, ctr.size(0)))
    out = torch.empty(loc_y.numel(), dtype=torch.long, device=loc_y.device)
    for start in range(0, loc_y.numel(), step):
        dist = cy[None, :] - loc_y[start:start + step, None]
        dx = cx[None, :] - loc_x[start:start + step, None]
        dist.mul_(dist)
        dx.mul_(dx)
        out[start:start + step] = torch.argmin(dist.add_(dx), dim=1)
    return out


def _cell_owners(ctr, height, width, cell):
    """(owners long [(R + 2) * (C + 2)], R, C) for a grid of R x C cells of ``cell`` pixels over the image, padded
    by one cell on every side: the index of the centre nearest to every point of a cell, -1 where no one centre is
    (and on the padding, which stands for votes outside the grid and NaN votes).

    For centres a and c the difference of squared distances |l - c|^2 - |l - a|^2 is linear in the point l, so its
    minimum over a cell is its value at the cell's middle minus cell * (|a_y - c_y| + |a_x - c_x|), in float64. A
    cell belongs to a when that minimum exceeds, for every other c, 2^-20 * (the largest squared distance in the
    image and grid): above twice the rounding of the float32 distances that ``_nearest_center`` compares (each
    within 4 * 2^-24 of its value), so the float32 argmin picks a too, and no tie is possible there.
    """
    rows, cols = -(-height // cell), -(-width // cell)
    c = ctr.to(torch.float64)
    middle_y = torch.arange(-1, rows + 1, device=ctr.device, dtype=torch.float64) * cell + cell / 2
    middle_x = torch.arange(-1, cols + 1, device=ctr.device, dtype=torch.float64) * cell + cell / 2
    dy, dx = middle_y[:, None] - c[:, 0], middle_x[:, None] - c[:, 1]  # [R + 2, K], [C + 2, K]
    dist = (dy * dy)[:, None, :] + (dx * dx)[None, :, :]  # [R + 2, C + 2, K]
    best = dist.argmin(2)
    nearest = c[best]  # [R + 2, C + 2, 2]
    slack = (nearest[..., None, 0] - c[:, 0]).abs_().add_((nearest[..., None, 1] - c[:, 1]).abs_()).mul_(cell)
    gap = dist.sub_(dist.gather(2, best[..., None])).sub_(slack)
    gap.scatter_(2, best[..., None], math.inf)
    largest = (rows * cell) ** 2 + (cols * cell) ** 2 + height ** 2 + width ** 2
    owned = gap.amin(2) > largest * 2.0 ** -20
    owned[0], owned[-1], owned[:, 0], owned[:, -1] = False, False, False, False
    return torch.where(owned, best, -1).view(-1), rows, cols


def _nearest_center_by_cells(ys, xs, off_y, off_x, ctr, height, width):
    """``_nearest_center``, bit for bit, for votes of an image of ``height`` x ``width``: votes in a cell that one
    centre owns (``_cell_owners``) take it; the others are evaluated against every centre."""
    cell = _CELL
    while (-(-height // cell) + 2) * (-(-width // cell) + 2) * ctr.shape[0] > _MAX_TABLE:
        cell *= 2
    owners, rows, cols = _cell_owners(ctr, height, width, cell)
    loc_y, loc_x = ys.to(off_y.dtype) + off_y, xs.to(off_x.dtype) + off_x
    row = loc_y.mul_(1.0 / cell).floor_().clamp_(-1, rows).nan_to_num_(-1).add_(1)
    col = loc_x.mul_(1.0 / cell).floor_().clamp_(-1, cols).nan_to_num_(-1).add_(1)
    out = owners[row.mul_(cols + 2).add_(col).to(torch.int32)]
    rest = torch.nonzero(out < 0)[:, 0]
    if rest.numel():
        out[rest] = _nearest_center(ys[rest], xs[rest], off_y[rest], off_x[rest], ctr)
    return out


def group_pixels(ctr, offsets, mask=None):
    """Assign pixels to their nearest centre.

    Args:
        ctr: long tensor [K, 2] of (y, x) centres (K >= 1).
        offsets: float tensor [1, 2, H, W] (or [2, H, W]) of (y, x) offsets in pixels.
        mask: optional bool tensor [H, W]; pixels outside it get 0 and are not evaluated.
    Returns:
        long tensor [1, H, W]: 1 + index of the nearest centre (0 is reserved for pixels outside ``mask``).
    """
    if offsets.dim() == 4:
        if offsets.size(0) != 1:
            raise ValueError(f"Only batch size 1 is supported, got offsets of shape {tuple(offsets.shape)}.")
        offsets = offsets[0]
    height, width = offsets.shape[-2:]
    ids = torch.zeros(height * width, dtype=torch.long, device=offsets.device)
    if mask is None:
        index = torch.arange(height * width, device=offsets.device)
    else:
        index = torch.nonzero(mask.reshape(-1))[:, 0]
    if index.numel():
        off = offsets.reshape(2, -1)[:, index]
        ids[index] = _nearest_center_by_cells(index // width, index % width, off[0], off[1], ctr, height, width) + 1
    return ids.view(1, height, width)


def _as_mask(x):
    """Bool view of a mask given as bool or as integers (non-zero: True), without a copy when already bool."""
    return x if x.dtype == torch.bool else x > 0


def thing_mask(sem_seg, thing_list):
    """Bool tensor like ``sem_seg``: True where the class is in ``thing_list`` (one lookup in a table of classes
    -1..n, n = max(thing_list) + 1, where ids below 0 and from n on are clamped to its False ends)."""
    n = max(thing_list, default=-1) + 1
    if n == 0:
        return torch.zeros_like(sem_seg, dtype=torch.bool)
    table = torch.zeros(n + 2, dtype=torch.bool, device=sem_seg.device)
    table[[c + 1 for c in thing_list]] = True
    return table[sem_seg.long().clamp(-1, n).add_(1)]


def get_instance_segmentation(sem_seg, ctr_hmp, offsets, thing_list, threshold=0.1, nms_kernel=3, top_k=None,
                              thing_seg=None):
    """Class-agnostic instance ids [1, H, W] (0 on non-thing pixels, 1..K by nearest centre) and centres [1, K, 2]."""
    if thing_seg is None:
        thing_seg = thing_mask(sem_seg, thing_list)
    ctr = find_instance_center(ctr_hmp, threshold=threshold, nms_kernel=nms_kernel, top_k=top_k)
    if ctr.size(0) == 0:
        return torch.zeros_like(sem_seg), ctr.unsqueeze(0)
    ins_seg = group_pixels(ctr, offsets, mask=_as_mask(thing_seg).reshape(thing_seg.shape[-2:]))
    return ins_seg, ctr.unsqueeze(0)


def _class_votes(sem_seg, ins_seg, counted, num_classes):
    """(votes long [K + 1, num_classes], bins long like the pixels): pixels of each (instance id, class) among
    ``counted`` (K = max instance id), and each pixel's bin, instance id * num_classes + class.

    Pixels that are not counted go to one extra bin, (K + 1) * num_classes, dropped from the votes: one bincount, no
    boolean compaction.
    """
    n_ins = int(ins_seg.max().item()) + 1 if ins_seg.numel() else 1
    bins = (ins_seg.long() * num_classes).add_(sem_seg).masked_fill_(~counted, n_ins * num_classes)
    votes = torch.bincount(bins.reshape(-1), minlength=(n_ins + 1) * num_classes)[:n_ins * num_classes]
    return votes.view(n_ins, num_classes), bins


def _majority(votes):
    """(classes long [K + 1], present bool [K + 1]) from the votes of instance ids 0..K; id 0 is never present."""
    present = votes.sum(1) > 0
    present[0] = False
    return votes.argmax(1), present


def instance_classes(sem_seg, ins_seg, is_thing, num_classes):
    """Majority semantic class of every instance id (ties: the smallest class, as ``torch.mode``).

    Args:
        sem_seg, ins_seg: long tensors of one shape (semantic ids, instance ids 0..K).
        is_thing: bool tensor of that shape; only these pixels vote.
        num_classes: number of semantic classes (at least max(sem_seg) + 1).
    Returns:
        (classes long [K + 1], present bool [K + 1]): entry i is instance id i; ``present`` is False for ids
        without voting pixels (id 0 included).
    """
    return _majority(_class_votes(sem_seg, ins_seg, is_thing & (ins_seg > 0), num_classes)[0])


def merge_semantic_and_instance(sem_seg, ins_seg, semantic_thing_seg, label_divisor, thing_list, stuff_area,
                                void_label):
    """Panoptic map [1, H, W] from semantic ids and class-agnostic instance ids (the original's rules).

    Each instance takes the majority semantic class of its thing pixels (ties: smallest class); instances of a class
    are numbered 1, 2, ... in increasing instance id; stuff classes with at least ``stuff_area`` pixels outside
    instances are pasted as ``class * label_divisor``; everything else is ``void_label``.
    """
    if semantic_thing_seg is None:
        semantic_thing_seg = thing_mask(sem_seg, thing_list)
    sem_seg = sem_seg.long()
    ins_seg = ins_seg.long()
    n_cls = int(sem_seg.max().item()) + 1 if sem_seg.numel() else 1
    n_cls = max(n_cls, max(thing_list, default=0) + 1)
    # row 0 of the votes (pixels outside instances) counts the stuff areas, rows 1..K the class votes of the
    # instances (pixels of an instance that are not things are not counted); the panoptic map is one lookup of each
    # pixel's bin in a table of the ids the bins get
    votes, bins = _class_votes(sem_seg, ins_seg, _as_mask(semantic_thing_seg) | (ins_seg == 0), n_cls)

    ins_class, present = _majority(votes)
    one_hot = torch.zeros(len(ins_class), n_cls, dtype=torch.long, device=sem_seg.device)
    one_hot[present, ins_class[present]] = 1
    rank = one_hot.cumsum(0).gather(1, ins_class[:, None])[:, 0]  # per-class number in increasing instance id
    new_ids = ins_class * label_divisor + rank

    is_thing_class = torch.zeros(n_cls, dtype=torch.bool, device=sem_seg.device)
    is_thing_class[list(thing_list)] = True
    keep = (votes[0] >= stuff_area) & ~is_thing_class
    stuff_ids = torch.where(keep, torch.arange(n_cls, device=sem_seg.device) * label_divisor, void_label)
    table = torch.cat([stuff_ids, new_ids[1:, None].expand(-1, n_cls).reshape(-1),
                       stuff_ids.new_full((1,), void_label)])
    return table[bins]


def get_panoptic_segmentation(sem, ctr_hmp, offsets, thing_list, label_divisor, stuff_area, void_label,
                              threshold=0.1, nms_kernel=3, top_k=None, foreground_mask=None):
    """Panoptic map of one image from the network outputs.

    Args:
        sem: semantic logits [1, C, H, W] or semantic ids [1, H, W].
        ctr_hmp: centre heatmap [1, 1, H, W] or [1, H, W].
        offsets: offsets [1, 2, H, W] (y, x pixels).
        thing_list: thing train ids; label_divisor, stuff_area, void_label: see ``merge_semantic_and_instance``.
        threshold, nms_kernel, top_k: see ``find_instance_center``.
        foreground_mask: optional foreground logits [1, 2, H, W] or mask [1, H, W] replacing the thing test.
    Returns:
        (panoptic ids long [1, H, W], centres long [1, K, 2]).
    """
    if sem.dim() not in (3, 4) or sem.size(0) != 1:
        raise ValueError(f"Semantic input must be [1, C, H, W] logits or [1, H, W] ids, got {tuple(sem.shape)}.")
    if ctr_hmp.size(0) != 1 or offsets.size(0) != 1:
        raise ValueError("Only batch size 1 is supported.")
    semantic = get_semantic_segmentation(sem) if sem.dim() == 4 else sem
    thing_seg = None
    if foreground_mask is not None:
        thing_seg = get_semantic_segmentation(foreground_mask) if foreground_mask.dim() == 4 else foreground_mask
    else:
        thing_seg = thing_mask(semantic, thing_list)
    instance, center = get_instance_segmentation(semantic, ctr_hmp, offsets, thing_list, threshold=threshold,
                                                 nms_kernel=nms_kernel, top_k=top_k, thing_seg=thing_seg)
    panoptic = merge_semantic_and_instance(semantic, instance, thing_seg, label_divisor, thing_list, stuff_area,
                                           void_label)
    return panoptic, center
