import numpy as np
import pytest
import torch

from segmentation.data.datasets import render_scene
from segmentation.data.transforms import PanopticTargetGenerator
from segmentation.model.post_processing import (
    find_instance_center,
    first_max_index,
    get_panoptic_segmentation,
    get_semantic_segmentation,
    group_pixels,
    merge_semantic_and_instance,
    thing_mask,
)
from segmentation.model.post_processing import instance_post_processing as ipp
from segmentation.model.post_processing.instance_post_processing import _window_max
from segmentation.model.post_processing.reference import reference_panoptic

THINGS = (4, 5, 6)


def test_find_instance_center_threshold_nms_and_strict_top_k():
    hmp = torch.zeros(1, 5, 5)
    hmp[0, 0, 0], hmp[0, 0, 1], hmp[0, 4, 4], hmp[0, 2, 2] = 0.9, 0.5, 0.8, 0.05
    assert find_instance_center(hmp, threshold=0.1, nms_kernel=3).tolist() == [[0, 0], [4, 4]]
    assert find_instance_center(hmp, threshold=0.1, nms_kernel=1).tolist() == [[0, 0], [0, 1], [4, 4]]
    # exactly top_k centres: the original keeps only those strictly above the k-th score
    assert find_instance_center(hmp, 0.1, 3, top_k=2).tolist() == [[0, 0]]
    assert find_instance_center(hmp, 0.1, 3, top_k=3).tolist() == [[0, 0], [4, 4]]


def test_group_pixels_nearest_vote():
    ctr = torch.tensor([[0, 0], [0, 3]])
    offsets = torch.zeros(1, 2, 1, 4)
    offsets[0, 1, 0, 1] = 2.0  # pixel (0, 1) votes for (0, 3)
    assert group_pixels(ctr, offsets).tolist() == [[[1, 2, 2, 2]]]  # (0, 2) is nearer to (0, 3)
    mask = torch.tensor([[True, True, False, True]])
    assert group_pixels(ctr, offsets, mask).tolist() == [[[1, 2, 0, 2]]]


def test_merge_majority_vote_numbering_and_stuff_area():
    sem = torch.tensor([[[4, 4, 5, 0, 0, 1]]])
    ins = torch.tensor([[[2, 2, 1, 0, 0, 0]]])
    pan = merge_semantic_and_instance(sem, ins, None, 1000, THINGS, stuff_area=2, void_label=255000)
    # instance 1 -> class 5 (#1), instance 2 -> class 4 (#1); stuff class 0 has 2 px, class 1 only 1 px -> void
    assert pan.tolist() == [[[4001, 4001, 5001, 0, 0, 255000]]]
    sem = torch.tensor([[[4, 5, 5, 4, 4, 4]]])
    ins = torch.tensor([[[1, 1, 2, 2, 3, 3]]])
    pan = merge_semantic_and_instance(sem, ins, None, 1000, THINGS, stuff_area=1, void_label=255000)
    # ties (one 4, one 5) go to the smaller class; numbering by increasing instance id per class
    assert pan.tolist() == [[[4001, 4001, 4002, 4002, 4003, 4003]]]


def test_semantic_argmax_first_max_on_ties():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 1, 0, 0] = logits[0, 2, 0, 0] = 1.0
    assert get_semantic_segmentation(logits).tolist() == [[[1, 0]]]


def test_first_max_index_is_max_indices_with_ties_nan_and_signed_zeros():
    x = torch.tensor([[1.0, 3.0, 3.0, -0.0, float("nan"), 2.0],
                      [3.0, 3.0, 1.0, 0.0, 1.0, float("nan")],
                      [2.0, 1.0, 3.0, -0.0, float("nan"), float("nan")]])
    # dim 0: first maximum (ties and -0.0 == 0.0 to the first), the first NaN wins
    assert first_max_index(x, 0).tolist() == [1, 0, 0, 0, 0, 1]
    assert first_max_index(x, 1).tolist() == [4, 5, 4]  # every row has a NaN
    assert first_max_index(x[:, :4], 1).tolist() == [1, 0, 2]
    g = torch.Generator().manual_seed(0)
    ties = torch.randint(0, 3, (2, 19, 5, 7), generator=g).float()  # many exact ties
    for dim in range(4):
        assert torch.equal(first_max_index(ties, dim), ties.max(dim).indices)
    wide = torch.randint(0, 4, (300, 6), generator=g).float()  # more than 255 planes: the plain kernel
    assert torch.equal(first_max_index(wide, 0), wide.max(0).indices)
    assert first_max_index(torch.zeros(3, 0), 0).shape == (0,)


def _brute_force_groups(ctr, offsets, mask):
    """The original's grouping: every pixel against every centre (float32 squared distances, first on ties)."""
    h, w = offsets.shape[-2:]
    index = torch.arange(h * w)
    out = ipp._nearest_center(index // w, index % w, offsets[0, 0].reshape(-1), offsets[0, 1].reshape(-1), ctr) + 1
    return torch.where(mask.reshape(-1), out, 0).view(1, h, w)


@pytest.mark.parametrize("table", [1 << 22, 1 << 12])  # the default cell, and cells doubled to bound the table
@pytest.mark.parametrize("seed", range(4))
def test_grouping_through_owned_cells_is_the_brute_force_one(seed, table, monkeypatch):
    """Votes near centres, on exact bisectors of two centres (ties), outside the image, NaN and infinite: the
    cell lookup and the fallback together give the all-centres evaluation bit for bit."""
    g = torch.Generator().manual_seed(seed)
    h, w = 150, 230  # not multiples of the cell
    k = [1, 2, 9, 40][seed]
    ctr = torch.stack([torch.randint(0, h, (k,), generator=g), torch.randint(0, w, (k,), generator=g)], 1)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    target = ctr[torch.randint(0, k, (h, w), generator=g)]  # each pixel votes near a random centre
    offsets = torch.stack([target[..., 0] - ys, target[..., 1] - xs]).float()
    offsets += torch.randn(2, h, w, generator=g) * torch.tensor([0.0, 0.5, 4.0, 40.0])[torch.randint(0, 4, (h, w),
                                                                                                  generator=g)]
    if k >= 2:  # the midpoint of centres 0 and 1: exactly equidistant
        mid = (ctr[0] + ctr[1]).float() / 2
        offsets[:, 5, :40] = (mid[:, None] - torch.stack([torch.full((40,), 5.0), torch.arange(40.0)]))
    offsets[0, 7, :3] = torch.tensor([-500.0, 1e6, float("inf")])
    offsets[1, 8, :2] = float("nan")
    mask = torch.rand(h, w, generator=g) > 0.2
    offsets = offsets[None]
    monkeypatch.setattr(ipp, "_MAX_TABLE", table)
    assert torch.equal(group_pixels(ctr, offsets, mask), _brute_force_groups(ctr, offsets, mask))


def test_every_point_of_an_owned_cell_is_nearest_to_its_owner():
    g = torch.Generator().manual_seed(3)
    h, w, cell = 64, 96, 8
    ctr = torch.stack([torch.randint(0, h, (4,), generator=g), torch.randint(0, w, (4,), generator=g)], 1)
    owners, rows, cols = ipp._cell_owners(ctr, h, w, cell)
    owners = owners.view(rows + 2, cols + 2)
    assert (owners[0] < 0).all() and (owners[-1] < 0).all() and (owners[:, 0] < 0).all() and (owners[:, -1] < 0).all()
    assert (owners >= 0).sum() > 0.5 * rows * cols  # most cells are owned
    fine = torch.arange(0, cell * rows * 4) / 4.0  # a quarter-pixel lattice over the grid, cell borders included
    fine_x = torch.arange(0, cell * cols * 4) / 4.0
    py, px = torch.meshgrid(fine, fine_x, indexing="ij")
    d = (py[..., None] - ctr[:, 0].double()) ** 2 + (px[..., None] - ctr[:, 1].double()) ** 2
    nearest = d.argmin(-1)
    cell_owner = owners[1:-1, 1:-1][(py // cell).long(), (px // cell).long()]
    assert torch.equal(nearest[cell_owner >= 0], cell_owner[cell_owner >= 0])


def _realistic_outputs(seed, h=96, w=160, noise=0.3):
    """Logits, heatmap and offsets shaped like a trained network's on a synthetic scene."""
    rng = np.random.default_rng(seed)
    _, pan, segs = render_scene(rng, h, w, max_objects=12, crowd_prob=0.5)
    t = PanopticTargetGenerator(255, lambda x: x, THINGS, sigma=4)(pan, segs)
    g = torch.Generator().manual_seed(seed)
    sem = t["semantic"].clamp(max=6)
    logits = torch.randn(1, 7, h, w, generator=g) + 3 * torch.nn.functional.one_hot(sem, 7).permute(2, 0, 1)[None]
    hmp = (t["center"] + 0.3 * torch.rand(1, h, w, generator=g) * (torch.rand(1, h, w, generator=g) > 0.995))[None]
    off = t["offset"][None] + noise * torch.randn(1, 2, h, w, generator=g)
    return logits, hmp, off


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("top_k", [None, 3, 200])
def test_panoptic_matches_naive_reference(seed, top_k):
    logits, hmp, off = _realistic_outputs(seed)
    kw = dict(thing_list=THINGS, label_divisor=1000, stuff_area=64, void_label=255000, threshold=0.1, nms_kernel=7,
              top_k=top_k)
    pan, ctr = get_panoptic_segmentation(logits, hmp, off, **kw)
    ref_pan, ref_ctr = reference_panoptic(logits, hmp, off, **kw)
    assert torch.equal(ctr, ref_ctr)
    assert torch.equal(pan, ref_pan)


def test_no_centres_gives_void_things():
    logits = torch.zeros(1, 7, 4, 4)
    logits[0, 4] = 1.0
    pan, ctr = get_panoptic_segmentation(logits, torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), THINGS, 1000, 0,
                                         255000)
    assert ctr.shape == (1, 0, 2) and pan.eq(255000).all()


def test_batch_size_above_one_is_an_error():
    with pytest.raises(ValueError, match="batch size 1"):
        find_instance_center(torch.zeros(2, 1, 4, 4))


@pytest.mark.parametrize("kernel", [1, 3, 5, 7, 9, 13])
def test_nms_window_max_equals_max_pooling(kernel):
    g = torch.Generator().manual_seed(kernel)
    heat = torch.rand(1, 23, 31, generator=g).round(decimals=1)  # many ties
    pooled = torch.nn.functional.max_pool2d(heat[None], kernel, 1, (kernel - 1) // 2)[0]
    assert torch.equal(_window_max(_window_max(heat[0], kernel, 0), kernel, 1), pooled[0])
    kw = dict(thing_list=THINGS, label_divisor=1000, stuff_area=0, void_label=255000, threshold=0.3,
              nms_kernel=kernel)
    logits, _, off = _realistic_outputs(kernel, h=23, w=31)
    assert torch.equal(get_panoptic_segmentation(logits, heat[None], off, **kw)[1],
                       reference_panoptic(logits, heat[None], off, top_k=None, **kw)[1])


@pytest.mark.parametrize("kernel", [0, 2, 4])
def test_even_nms_kernel_is_an_error(kernel):
    with pytest.raises(ValueError, match="POST_PROCESSING.NMS_KERNEL"):
        find_instance_center(torch.zeros(1, 4, 4), nms_kernel=kernel)


def test_thing_mask_is_a_table_lookup():
    sem = torch.tensor([[0, 4, 9, 5], [6, 3, 255, 4], [-1, -7, 7, 2 ** 40]])  # ids outside the table are not things
    assert thing_mask(sem, THINGS).tolist() == [[False, True, False, True], [True, False, False, True],
                                                [False, False, False, False]]
    for dtype in (torch.int32, torch.uint8):
        assert torch.equal(thing_mask(sem[:2].to(dtype), THINGS), thing_mask(sem[:2], THINGS))
    assert not thing_mask(sem, ()).any()
    assert sem[2, 3] == 2 ** 40  # the input is left as it was
