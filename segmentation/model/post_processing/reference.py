"""The original repository's post-processing rules written plainly (full K x H x W distances, loops over instances
and classes): the oracle of the vectorized functions in tests and the baseline of tools/benchmark_decoding.py.
Slow (seconds at 1024x2048) and memory-hungry; never used for decoding."""
import torch
import torch.nn.functional as F


def reference_panoptic(sem_logits, ctr_hmp, offsets, thing_list, label_divisor, stuff_area, void_label, threshold,
                       nms_kernel, top_k):
    sem = sem_logits[0].argmax(0)
    hmp = F.threshold(ctr_hmp, threshold, -1.0)
    pooled = F.max_pool2d(hmp, nms_kernel, 1, (nms_kernel - 1) // 2)
    hmp = hmp.clone()
    hmp[hmp != pooled] = -1
    hmp = hmp.squeeze()
    ctr = torch.nonzero(hmp > 0)
    if top_k is not None and ctr.size(0) >= top_k:
        kth = torch.topk(hmp.flatten(), top_k).values[-1]
        ctr = torch.nonzero(hmp > kth)
    h, w = sem.shape
    thing = torch.zeros_like(sem)
    for c in thing_list:
        thing[sem == c] = 1
    if ctr.size(0) == 0:
        ins = torch.zeros_like(sem)
    else:
        ys = torch.arange(h, dtype=offsets.dtype)[:, None].expand(h, w)
        xs = torch.arange(w, dtype=offsets.dtype)[None, :].expand(h, w)
        loc = torch.stack([ys + offsets[0, 0], xs + offsets[0, 1]]).reshape(2, -1).T[None]
        dist = torch.norm(ctr[:, None].float() - loc, dim=-1)
        ins = (dist.argmin(0).reshape(h, w) + 1) * thing
    pan = torch.full_like(sem, void_label)
    tracker = {}
    for i in torch.unique(ins).tolist():
        if i == 0:
            continue
        m = (ins == i) & (thing > 0)
        if not m.any():
            continue
        c = torch.mode(sem[m]).values.item()
        tracker[c] = tracker.get(c, 0) + 1
        pan[m] = c * label_divisor + tracker[c]
    for c in torch.unique(sem).tolist():
        if c in thing_list:
            continue
        m = (sem == c) & (ins == 0)
        if m.sum() >= stuff_area:
            pan[m] = c * label_divisor
    return pan[None], ctr[None]
