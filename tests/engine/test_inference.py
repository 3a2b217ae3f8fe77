"""Test-time augmentation: the geometry of flips and scales, and evaluation with it on both paths."""
import pytest
import torch
import torch.nn as nn

from segmentation.data import build_test_loader
from segmentation.data.datasets import SYNTHETIC_METADATA
from segmentation.engine import Trainer, evaluate, predict, predict_tta, tta_enabled
from segmentation.model.output_math import compose
from segmentation.model.output_math.wrapper import OutputMathModel


class GeometricNet(nn.Module):
    """Constant class scores, the first image channel as heatmap, and offsets from every pixel to the image centre
    in the frame it is given: an equivariant network, so TTA must reproduce its plain outputs."""

    def forward(self, x):
        n, _, h, w = x.shape
        ys = torch.arange(h, dtype=x.dtype)[:, None].expand(h, w)
        xs = torch.arange(w, dtype=x.dtype)[None, :].expand(h, w)
        offset = torch.stack([(h - 1) / 2 - ys, (w - 1) / 2 - xs]).expand(n, 2, h, w)
        semantic = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1).expand(n, 3, h, w)
        return {"semantic": semantic, "center": x[:, :1], "offset": offset}


class ContentOffsets(nn.Module):
    """Offsets (y, x) both equal to the first image channel: not mirror-equivariant in x."""

    def forward(self, x):
        return {"center": x[:, :1], "offset": torch.cat([x[:, :1], x[:, :1]], dim=1)}


def _ramp(h=64, w=128):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    return (ys + 2 * xs)[None, None].expand(1, 3, h, w).contiguous()


@pytest.mark.parametrize("scales,flip", [((1.0,), True), ((0.5, 1.0, 1.5), False), ((0.5, 1.5), True)])
def test_tta_of_an_equivariant_network_reproduces_its_outputs(scales, flip):
    images = _ramp()  # 64x128: every scale stays a multiple of 32, so no padding moves the image centre
    plain, tta = predict(GeometricNet(), images), predict_tta(GeometricNet(), images, scales, flip)
    inner = (..., slice(2, -2), slice(2, -2))  # bilinear resizing clamps at the border
    torch.testing.assert_close(tta["offset"][inner], plain["offset"][inner], atol=1e-4, rtol=0)
    torch.testing.assert_close(tta["center"][inner], plain["center"][inner], atol=1e-3, rtol=0)
    torch.testing.assert_close(tta["semantic"], torch.log_softmax(plain["semantic"], dim=1))  # log probabilities


def test_flip_negates_x_offsets_and_averages():
    images = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4).expand(1, 3, 3, 4).contiguous()
    out = predict_tta(ContentOffsets(), images, (1.0,), flip=True)
    # y: (v + v) / 2 = v ; x: (v - v) / 2 = 0 ; the heatmap is mirrored back before averaging
    assert torch.equal(out["offset"][0, 0], images[0, 0]) and torch.equal(out["offset"][0, 1], torch.zeros(3, 4))
    assert torch.equal(out["center"][0, 0], images[0, 0])


def test_scaled_offsets_are_in_input_pixels():
    images = torch.ones(1, 3, 64, 64)
    out = predict_tta(ContentOffsets(), images, (0.5,), flip=False)
    # a constant 1-pixel offset at half resolution is 2 pixels in the input frame
    assert torch.allclose(out["offset"], torch.full((1, 2, 64, 64), 2.0))


def test_tta_switch_and_invalid_scales(synthetic_cfg):
    assert not tta_enabled(synthetic_cfg)
    synthetic_cfg.TEST.SCALE_LIST = (1.0, 1.25)
    assert tta_enabled(synthetic_cfg)
    with pytest.raises(ValueError, match="TEST.SCALE_LIST"):
        predict_tta(GeometricNet(), _ramp(), (0.0,))


def test_evaluation_with_tta_on_both_paths(synthetic_cfg):
    synthetic_cfg.TEST.FLIP_TEST, synthetic_cfg.TEST.SCALE_LIST = True, (0.75, 1.0)
    trainer = Trainer(synthetic_cfg)
    loader = build_test_loader(synthetic_cfg)
    conventional = evaluate(synthetic_cfg, trainer.model, loader, SYNTHETIC_METADATA, trainer.device)
    om_model = OutputMathModel(trainer.model, compose("panoptic-deeplab"), synthetic_cfg, SYNTHETIC_METADATA)
    through_om = evaluate(synthetic_cfg, om_model, loader, SYNTHETIC_METADATA, trainer.device)
    for key in ("PQ", "SQ", "RQ", "mIoU"):
        assert through_om[key] == pytest.approx(conventional[key])
    # TTA switched on with one scale and no flip decodes exactly as without it
    synthetic_cfg.TEST.FLIP_TEST, synthetic_cfg.TEST.SCALE_LIST = False, (1,)
    plain = evaluate(synthetic_cfg, trainer.model, loader, SYNTHETIC_METADATA, trainer.device)
    synthetic_cfg.TEST.TEST_TIME_AUGMENTATION = True
    same = evaluate(synthetic_cfg, trainer.model, loader, SYNTHETIC_METADATA, trainer.device)
    assert {k: same[k] for k in ("PQ", "mIoU")} == {k: plain[k] for k in ("PQ", "mIoU")}
