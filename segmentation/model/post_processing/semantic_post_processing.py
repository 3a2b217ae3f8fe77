"""Semantic decoding."""


def get_semantic_segmentation(sem):
    """Class ids [1, H, W] (long) from logits [1, C, H, W]; the first maximum wins on ties.

    ``max(dim).indices`` reads the class planes once; it is several times faster than ``argmax`` over a
    non-innermost dimension on CPU and follows the same first-maximum rule.
    """
    if sem.size(0) != 1:
        raise ValueError(f"Only batch size 1 is supported, got logits of shape {tuple(sem.shape)}.")
    return sem.squeeze(0).max(dim=0, keepdim=True).indices
