import numpy as np
import pytest
import torch

from segmentation.data.datasets import render_scene
from segmentation.data.datasets.synthetic import SYNTHETIC_METADATA
from segmentation.data.transforms import PanopticTargetGenerator, encode_panoptic, gaussian_kernel
from segmentation.data.transforms.reference import reference_targets as original_rules
from tests.data.reference_targets import reference_targets

KEYS = ("semantic", "foreground", "center", "offset", "semantic_weights", "center_weights", "offset_weights")


def _generator(**kw):
    return PanopticTargetGenerator(ignore_label=255, rgb2id=lambda x: x, **kw)


def test_hand_made_map():
    # 4x5 map: stuff id 1 (class 0), thing id 2 (class 2, 3 px), crowd id 3 (class 2), unlisted id 9 (void)
    pan = np.array([[1, 1, 2, 2, 9],
                    [1, 1, 2, 0, 0],
                    [3, 3, 1, 1, 1],
                    [3, 3, 1, 1, 1]])
    segs = [{"id": 1, "category_id": 0, "iscrowd": 0}, {"id": 2, "category_id": 2, "iscrowd": 0},
            {"id": 3, "category_id": 2, "iscrowd": 1}]
    out = _generator(thing_list=[2], sigma=1, ignore_stuff_in_offset=True, small_instance_area=4,
                     small_instance_weight=3)(pan, segs)
    assert out["semantic"].tolist() == [[0, 0, 2, 2, 255], [0, 0, 2, 255, 255], [2, 2, 0, 0, 0], [2, 2, 0, 0, 0]]
    assert out["foreground"].tolist() == [[0, 0, 1, 1, 0], [0, 0, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 0, 0, 0]]
    # thing centre (1/3, 7/3); crowd centre (2.5, 0.5): crowd keeps its centre and offsets
    assert np.allclose(out["center_points"], [[1 / 3, 7 / 3], [2.5, 0.5]])
    off = out["offset"]
    assert off[0, 0, 2].item() == pytest.approx(1 / 3) and off[1, 0, 2].item() == pytest.approx(1 / 3)
    assert off[0, 1, 2].item() == pytest.approx(-2 / 3) and off[1, 1, 2].item() == pytest.approx(1 / 3)
    assert off[:, 2, 0].tolist() == pytest.approx([0.5, 0.5]) and off[:, 0, 0].tolist() == [0, 0]
    # thing (3 px) and crowd (4 px is not < 4) weights; crowd has no centre/offset weight
    assert out["semantic_weights"].tolist()[0] == [1, 1, 3, 3, 1]
    assert out["semantic_weights"][2, 0].item() == 1
    assert out["center_weights"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1]]
    assert out["offset_weights"].tolist() == [[0, 0, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    # Gaussian peaks of value 1 at the truncated centres (0, 2) and (2, 0)
    assert out["center"][0, 0, 2].item() == 1.0 and out["center"][0, 2, 0].item() == 1.0
    assert out["center"][0, 1, 2].item() == pytest.approx(np.exp(-0.5), rel=1e-6)


def test_gaussian_kernel_shape_and_peak():
    g = gaussian_kernel(8)
    assert g.shape == (51, 51) and g[25, 25] == 1.0 and g.argmax().item() == 25 * 51 + 25


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("options", [
    dict(sigma=8),
    dict(sigma=3, ignore_stuff_in_offset=True, small_instance_area=300, small_instance_weight=3),
    dict(sigma=5, ignore_crowd_in_semantic=True),
])
@pytest.mark.parametrize("id_offset", [0, 1 << 23])  # small ids: a lookup table; COCO's 24-bit ids: a search
def test_matches_naive_references_on_random_scenes(seed, options, id_offset):
    """Against the pixel-loop reference of this folder and the original's rules of the package (the baseline of
    tools/benchmark_targets.py)."""
    rng = np.random.default_rng(seed)
    _, pan, segs = render_scene(rng, 72, 100, max_objects=10, crowd_prob=0.8)
    # crop-like situation: the segment list also names segments absent from the map
    segs = segs + [{"id": 999, "category_id": 4, "iscrowd": 0}]
    pan = pan.astype(np.int64) + id_offset
    segs = [{**s, "id": s["id"] + id_offset} for s in segs]
    thing = list(SYNTHETIC_METADATA.thing_ids)
    out = _generator(thing_list=thing, **options)(pan, segs)
    for ref in (reference_targets(pan, segs, thing, **options),
                original_rules(pan, segs, thing, ignore_label=255, **options)):
        for k in KEYS:
            assert torch.equal(out[k], torch.as_tensor(ref[k])), k
        assert out["center_points"] == ref["center_points"]


def test_center_near_border_and_no_segments():
    pan = np.zeros((10, 12), np.int64)
    pan[0:2, 10:12] = 5
    out = _generator(thing_list=[1], sigma=2)(pan, [{"id": 5, "category_id": 1, "iscrowd": 0}])
    ref = reference_targets(pan, [{"id": 5, "category_id": 1, "iscrowd": 0}], [1], sigma=2)
    for k in KEYS:
        assert torch.equal(out[k], torch.as_tensor(ref[k])), k
    empty = _generator(thing_list=[1])(np.zeros((3, 3), np.int64), [])
    assert empty["semantic"].eq(255).all() and empty["center"].eq(0).all() and empty["center_points"] == []


def test_encode_panoptic_numbers_instances_per_class():
    pan = np.array([[1, 2, 3, 4, 0]])
    segs = [{"id": 1, "category_id": 0, "iscrowd": 0}, {"id": 2, "category_id": 4, "iscrowd": 0},
            {"id": 3, "category_id": 4, "iscrowd": 0}, {"id": 4, "category_id": 5, "iscrowd": 1}]
    assert encode_panoptic(pan, segs, SYNTHETIC_METADATA).tolist() == [[0, 4001, 4002, 5000, 255000]]
