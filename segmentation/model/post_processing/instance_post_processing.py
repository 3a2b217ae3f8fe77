"""Panoptic-DeepLab decoding as pure tensor functions, with the original repository's signatures and outputs.

Vectorized: no Python loop over instances or classes. Grouping evaluates squared distances between thing-pixel
votes and centres in chunks of pixels, so memory stays bounded (no K x H x W distance tensor).
"""
import torch
import torch.nn.functional as F

from .semantic_post_processing import get_semantic_segmentation

# Upper bound on the elements of one (pixels x centres) distance chunk.
_CHUNK_ELEMENTS = 1 << 22


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
    ctr_hmp = F.threshold(ctr_hmp, threshold, -1.0)
    pad = (nms_kernel - 1) // 2
    pooled = F.max_pool2d(ctr_hmp, kernel_size=nms_kernel, stride=1, padding=pad)
    ctr_hmp = torch.where(ctr_hmp == pooled, ctr_hmp, torch.full_like(ctr_hmp, -1.0)).squeeze()
    if ctr_hmp.dim() != 2:
        raise ValueError(f"The centre heatmap must be [1, H, W] or [1, 1, H, W], got {tuple(ctr_hmp.shape)}.")
    ctr_all = torch.nonzero(ctr_hmp > 0)
    if top_k is None or ctr_all.size(0) < top_k:
        return ctr_all
    kth = torch.topk(ctr_hmp.flatten(), top_k).values[-1]
    return torch.nonzero(ctr_hmp > kth)


def _nearest_center(ys, xs, off_y, off_x, ctr):
    """Index (0-based) of the centre closest to each vote (y + off_y, x + off_x); first index on ties."""
    loc_y, loc_x = ys.to(off_y.dtype) + off_y, xs.to(off_x.dtype) + off_x
    cy, cx = ctr[:, 0].to(off_y.dtype), ctr[:, 1].to(off_x.dtype)
    step = max(1, _CHUNK_ELEMENTS // max(1, ctr.size(0)))
    out = torch.empty(loc_y.numel(), dtype=torch.long, device=loc_y.device)
    for start in range(0, loc_y.numel(), step):
        dy = cy[None, :] - loc_y[start:start + step, None]
        dx = cx[None, :] - loc_x[start:start + step, None]
        out[start:start + step] = torch.argmin(dy * dy + dx * dx, dim=1)
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
    if mask is None:
        mask = torch.ones(height, width, dtype=torch.bool, device=offsets.device)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    ids = torch.zeros(height, width, dtype=torch.long, device=offsets.device)
    if ys.numel():
        ids[ys, xs] = _nearest_center(ys, xs, offsets[0, ys, xs], offsets[1, ys, xs], ctr) + 1
    return ids[None]


def thing_mask(sem_seg, thing_list):
    """Bool tensor like ``sem_seg``: True where the class is in ``thing_list``."""
    return torch.isin(sem_seg, torch.as_tensor(list(thing_list), dtype=sem_seg.dtype, device=sem_seg.device))


def get_instance_segmentation(sem_seg, ctr_hmp, offsets, thing_list, threshold=0.1, nms_kernel=3, top_k=None,
                              thing_seg=None):
    """Class-agnostic instance ids [1, H, W] (0 on non-thing pixels, 1..K by nearest centre) and centres [1, K, 2]."""
    if thing_seg is None:
        thing_seg = thing_mask(sem_seg, thing_list).long()
    ctr = find_instance_center(ctr_hmp, threshold=threshold, nms_kernel=nms_kernel, top_k=top_k)
    if ctr.size(0) == 0:
        return torch.zeros_like(sem_seg), ctr.unsqueeze(0)
    ins_seg = group_pixels(ctr, offsets, mask=thing_seg.reshape(thing_seg.shape[-2:]) > 0)
    return ins_seg, ctr.unsqueeze(0)


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
    n_ins = int(ins_seg.max().item()) + 1 if ins_seg.numel() else 1
    ins_px, sem_px = ins_seg[is_thing], sem_seg[is_thing]
    votes = torch.bincount(ins_px * num_classes + sem_px, minlength=n_ins * num_classes).view(n_ins, num_classes)
    present = votes.sum(1) > 0
    present[0] = False
    return votes.argmax(1), present


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
    pan_seg = torch.full_like(sem_seg, void_label)
    is_thing = (ins_seg > 0) & (semantic_thing_seg > 0)
    n_cls = int(sem_seg.max().item()) + 1 if sem_seg.numel() else 1
    n_cls = max(n_cls, max(thing_list, default=0) + 1)

    ins_class, present = instance_classes(sem_seg, ins_seg, is_thing, n_cls)
    one_hot = torch.zeros(len(ins_class), n_cls, dtype=torch.long, device=sem_seg.device)
    one_hot[present, ins_class[present]] = 1
    rank = one_hot.cumsum(0).gather(1, ins_class[:, None])[:, 0]  # per-class number in increasing instance id
    new_ids = ins_class * label_divisor + rank
    pan_seg[is_thing] = new_ids[ins_seg[is_thing]]

    stuff_px = ins_seg == 0
    area = torch.bincount(sem_seg[stuff_px], minlength=n_cls)
    is_thing_class = torch.zeros(n_cls, dtype=torch.bool, device=sem_seg.device)
    is_thing_class[list(thing_list)] = True
    keep = (area >= stuff_area) & ~is_thing_class
    paste = stuff_px & keep[sem_seg]
    pan_seg[paste] = sem_seg[paste] * label_divisor
    return pan_seg


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
        thing_seg = thing_mask(semantic, thing_list).long()
    instance, center = get_instance_segmentation(semantic, ctr_hmp, offsets, thing_list, threshold=threshold,
                                                 nms_kernel=nms_kernel, top_k=top_k, thing_seg=thing_seg)
    panoptic = merge_semantic_and_instance(semantic, instance, thing_seg, label_divisor, thing_list, stuff_area,
                                           void_label)
    return panoptic, center
