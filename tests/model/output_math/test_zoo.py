"""The formulation zoo's mixins (focal-centers, hard-pixel-centers, size-adaptive-sigma): exact values on hand-made
tensors, and the cases where each reduces to the base formulation bit for bit."""
import math

import numpy as np
import pytest
import torch

from segmentation.config import get_default_config
from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.data.transforms import encode_panoptic
from segmentation.model.output_math import compose
from segmentation.model.output_math.formulations.size_adaptive_sigma import cornernet_radius
from tests.model.output_math.test_panoptic_deeplab import _cfg, _losses, _om


def _bare(mixins, cfg=None):
    cfg = cfg or get_default_config()
    return compose("panoptic-deeplab", mixins)({}, config=cfg, metadata=META, losses=_losses(cfg))


def test_focal_centers_loss_on_a_hand_made_heatmap():
    """Logits 0, ln 3, -ln 3, 5 (p = 1/2, 3/4, 1/4, .): a peak (truth 1), a shoulder (truth 1/2), a background pixel
    and a crowd pixel (weight 0, not counted); alpha 2, beta 4, one peak."""
    om = _bare(("focal-centers",))
    om["center_logits_pred"] = torch.tensor([[[[0.0, math.log(3), -math.log(3), 5.0]]]])
    om["center_truth"] = torch.tensor([[[[1.0, 0.5, 0.0, 1.0]]]])
    om["center_weights_truth"] = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])
    expected = -((1 - 0.5) ** 2 * math.log(0.5) + (1 - 0.5) ** 4 * 0.75 ** 2 * math.log(0.25)
                 + 0.25 ** 2 * math.log(0.75))
    assert om.center_loss().item() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(om.center_pred(), torch.sigmoid(om.center_logits_pred()))


def test_focal_centers_decodes_probabilities():
    """center_pred is the sigmoid of the head's output: a logit of 0 is p = 1/2, above CENTER_THRESHOLD 0.1."""
    om = _bare(("focal-centers",))
    om["center_logits_pred"] = torch.zeros(1, 1, 2, 2)
    assert torch.equal(om.center_pred(), torch.full((1, 1, 2, 2), 0.5))


def test_hard_pixel_centers_keeps_the_hardest_fraction():
    cfg = get_default_config()
    cfg.OM.HARD_PIXEL_CENTERS.TOP_K_PERCENT = 0.5
    om = _bare(("hard-pixel-centers",), cfg)
    om["center_pred"] = torch.tensor([[[[1.0, 3.0, 0.0, 2.0]]]])
    om["center_truth"] = torch.zeros(1, 1, 1, 4)
    om["center_weights_truth"] = torch.tensor([[[1.0, 0.0, 1.0, 1.0]]])  # the 9 does not count
    assert om.center_loss().item() == (4.0 + 1.0) / 2  # squared errors 1, 0, 0, 4: the two largest


def test_hard_pixel_centers_with_every_pixel_is_the_base_loss():
    cfg = _cfg()
    cfg.OM.HARD_PIXEL_CENTERS.TOP_K_PERCENT = 1.0
    pred, truth = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.rand(2, 1, 8, 8)
    values = []
    for mixins in ((), ("hard-pixel-centers",)):
        om = _bare(mixins, cfg)
        om["center_pred"], om["center_truth"], om["center_weights_truth"] = pred, truth, torch.ones(2, 8, 8)
        values.append(om.center_loss().item())
    assert values[0] == pytest.approx(values[1], rel=1e-6)


def test_cornernet_radius_of_known_boxes():
    """32 x 32 at overlap 0.7: the third case, (-2*0.7*64 + sqrt((0.7*128)^2 + 4*2.8*0.3*1024)) / 2 = 8.75...;
    a 64 x 64 box has twice that radius (every case scales linearly)."""
    r = cornernet_radius(torch.tensor([32, 64]), torch.tensor([32, 64]), 0.7)
    third = (-89.6 + math.sqrt(89.6 ** 2 + 4 * 2.8 * 0.3 * 1024)) / 2
    assert r[0].item() == pytest.approx(third, rel=1e-12) and r[1].item() == pytest.approx(2 * third, rel=1e-12)


def _scene():
    """A 40 x 48 map: a 6 x 10 ball (class 4) and a 20 x 16 crate (class 5) on road (class 0)."""
    ids = np.zeros((40, 48), np.int32)
    ids[2:8, 3:13] = 1
    ids[15:35, 20:36] = 2
    segments = [{"id": 0, "category_id": 0, "iscrowd": 0}, {"id": 1, "category_id": 4, "iscrowd": 0},
                {"id": 2, "category_id": 5, "iscrowd": 0}]
    return encode_panoptic(ids, segments, META)[None]


def test_size_adaptive_sigma_boxes_and_sigmas():
    cfg = _cfg()
    cfg.OM.SIZE_ADAPTIVE_SIGMA.MIN_SIGMA, cfg.OM.SIZE_ADAPTIVE_SIGMA.MAX_SIGMA = 0.1, 12.0
    om = _om(_scene(), mixins=("size-adaptive-sigma",), cfg=cfg)
    seg = om.thing_segments_truth()[0].tolist()
    boxes = om.segment_box_truth()[0, seg].tolist()
    assert sorted(boxes) == [[2, 3, 7, 12], [15, 20, 34, 35]]
    radius = torch.floor(cornernet_radius(torch.tensor([6, 20]), torch.tensor([10, 16]), 0.7))
    expected = dict(zip([4001, 5001], ((2 * radius + 1) / 6).tolist()))
    assert om.instance_sigma_truth()[0].tolist() == [expected[s] for s in seg]
    heat = om.center_truth()[0, 0]
    cy, cx = 4, 7  # the ball's truncated centroid (4.5, 7.5)
    sigma = expected[4001]
    assert heat[cy, cx].item() == 1.0
    assert heat[cy, cx + 1].item() == pytest.approx(math.exp(-1 / (2 * sigma ** 2)), rel=1e-6)


def test_size_adaptive_sigma_with_one_integer_sigma_is_the_base_heatmap():
    cfg = _cfg()
    cfg.OM.SIZE_ADAPTIVE_SIGMA.MIN_SIGMA = cfg.OM.SIZE_ADAPTIVE_SIGMA.MAX_SIGMA = float(cfg.DATASET.GAUSSIAN_SIGMA)
    pan = _scene()
    adaptive = _om(pan, mixins=("size-adaptive-sigma",), cfg=cfg).center_truth()
    assert torch.equal(adaptive, _om(pan, cfg=cfg).center_truth())


def test_focal_centers_logits_start_at_the_prior():
    """CenterNet's bias initialisation as a constant: a head output of 0 is the prior logit."""
    cfg = get_default_config()
    om = compose("panoptic-deeplab", ("focal-centers",))({"center_pred": torch.zeros(1, 1, 1, 2)}, config=cfg,
                                                         metadata=META)
    assert torch.equal(om.center_logits_pred(), torch.full((1, 1, 1, 2), cfg.OM.FOCAL_CENTERS.PRIOR_LOGIT))
