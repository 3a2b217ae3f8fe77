"""Semantic decoding."""
import torch


def first_max_index(x, dim):
    """Index of the first maximum of ``x`` along ``dim`` (long, ``dim`` removed): ``x.max(dim).indices``, NaN
    included (the first NaN wins), about twice as fast on CPU for a non-innermost ``dim``.

    torch's max-with-indices kernel does not vectorise over the planes of an outer dimension; the maximum alone
    (``amax``) does. So: the maximum, then which planes equal it, weighted (size - index) as uint8, and the
    largest weight is the first index. Where nothing equals the maximum (it is NaN) the plain kernel decides.
    """
    size = x.shape[dim]
    if size > 255 or torch.compiler.is_compiling() or x.numel() == 0:
        return x.max(dim).indices
    shape = [1] * x.dim()
    shape[dim] = size
    weights = torch.arange(size, 0, -1, dtype=torch.uint8, device=x.device).view(shape)
    hits = torch.eq(x, x.amax(dim, keepdim=True)).view(torch.uint8).mul_(weights).amax(dim)
    index = size - hits.long()
    missing = hits == 0
    if bool(missing.any()):  # a NaN along dim: no plane equals the maximum
        index = torch.where(missing, x.max(dim).indices, index)
    return index


def get_semantic_segmentation(sem):
    """Class ids [1, H, W] (long) from logits [1, C, H, W]; the first maximum wins on ties (``first_max_index``)."""
    if sem.size(0) != 1:
        raise ValueError(f"Only batch size 1 is supported, got logits of shape {tuple(sem.shape)}.")
    return first_max_index(sem, 1)
