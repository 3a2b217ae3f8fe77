import pytest
import torch

from segmentation.config import get_default_config
from segmentation.model import build_model
from segmentation.model.decoder.conv_module import CONV_REGISTRY
from segmentation.model.meta_arch import META_ARCH_REGISTRY
from segmentation.model.meta_arch.base import pad_test_images, upsample


def _cfg(meta_arch, backbone="resnet18"):
    cfg = get_default_config()
    cfg.MODEL.META_ARCHITECTURE = meta_arch
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.DATASET.NUM_CLASSES = 5
    cfg.MODEL.DECODER.IN_CHANNELS = 512
    cfg.MODEL.DECODER.DECODER_CHANNELS = 32
    cfg.MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_CHANNELS = (128, 64)
    cfg.MODEL.DEEPLABV3PLUS.LOW_LEVEL_CHANNELS = 64
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE = True
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.DECODER_CHANNELS = 16
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ASPP_CHANNELS = 32
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.HEAD_CHANNELS = 16
    return cfg


def _targets(n, h, w):
    return {"semantic": torch.randint(0, 5, (n, h, w)), "semantic_weights": torch.ones(n, h, w),
            "center": torch.rand(n, 1, h, w), "center_weights": torch.ones(n, h, w),
            "offset": torch.randn(n, 2, h, w), "offset_weights": torch.ones(n, h, w)}


@pytest.mark.parametrize("name", META_ARCH_REGISTRY.names())
def test_forward_returns_plain_dict_at_input_size_and_losses(name):
    model = build_model(_cfg(name))
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    assert isinstance(out, dict) and out["semantic"].shape == (2, 5, 64, 96)
    if name == "panoptic_deeplab":
        assert out["center"].shape == (2, 1, 64, 96) and out["offset"].shape == (2, 2, 64, 96)
    out = model(x, _targets(2, 64, 96))
    expected = {"semantic_loss", "loss"} | ({"center_loss", "offset_loss"} if name == "panoptic_deeplab" else set())
    assert expected <= set(out)
    out["loss"].backward()
    weighted = sum(w * out[f"{n}_loss"] for n, _, _, _, w in model.loss_terms)
    assert torch.allclose(out["loss"], weighted)


@pytest.mark.parametrize("align_corners, size, factor", [(False, (32, 32), 4.0), (True, (29, 29), 4.0),
                                                          (True, (32, 32), 31 / 7)])
def test_offsets_scaled_by_upsampling_factor(align_corners, size, factor):
    """Half-pixel upsampling scales by H / h; align_corners=True maps corner to corner: (H - 1) / (h - 1) (the
    original's 1025 / 257 at stride 4 is exactly 4)."""
    raw = {"offset": torch.ones(1, 2, 8, 8), "center": torch.ones(1, 1, 8, 8)}
    up = upsample(raw, size, align_corners)
    assert torch.allclose(up["offset"], torch.full((1, 2, *size), factor))
    assert torch.allclose(up["center"], torch.ones(1, 1, *size))


@pytest.mark.parametrize("size, crop, expected", [
    ((1024, 2048), (1025, 2049), (1025, 2049)),  # the original's Cityscapes test padding
    ((1025, 2049), (1025, 2049), (1025, 2049)),
    ((1026, 100), (1025, 2049), (1057, 2049)),  # larger: the crop size plus a multiple of 32, same alignment
    ((100, 70), None, (128, 96)),  # TEST.PAD_TO_CROP_SIZE False: a multiple of 32
])
def test_test_images_are_padded_with_the_mean_colour_at_the_bottom_right(size, crop, expected):
    images = torch.ones(1, 3, *size)
    padded = pad_test_images(images, crop)
    assert padded.shape[-2:] == expected
    assert torch.equal(padded[..., :size[0], :size[1]], images) and padded.sum() == images.sum()


def test_aspp_works_at_any_input_size():
    model = build_model(_cfg("panoptic_deeplab")).eval()
    with torch.no_grad():
        for size in ((64, 64), (96, 160), (128, 96)):
            assert model(torch.randn(1, 3, *size))["semantic"].shape[-2:] == size


def test_feature_key_mismatch_names_valid_keys():
    cfg = _cfg("panoptic_deeplab")
    cfg.MODEL.DECODER.FEATURE_KEY = "layer_18"
    with pytest.raises(ValueError, match="res5"):
        build_model(cfg)
    cfg = _cfg("panoptic_deeplab")
    cfg.MODEL.DECODER.IN_CHANNELS = 2048
    with pytest.raises(ValueError, match="gives 512"):
        build_model(cfg)


def test_unknown_meta_architecture_lists_valid_names():
    cfg = _cfg("panoptic-deeplab")
    with pytest.raises(KeyError, match="panoptic_deeplab"):
        build_model(cfg)


@pytest.mark.parametrize("name", META_ARCH_REGISTRY.names())
@pytest.mark.parametrize("conv_type", CONV_REGISTRY.names())
@pytest.mark.parametrize("aspp_conv_type", CONV_REGISTRY.names())
def test_decoder_conv_types(name, conv_type, aspp_conv_type):
    """MODEL.DECODER.CONV_TYPE / ASPP_CONV_TYPE: the original repository's choice (regular ASPP, DS fuse/heads),
    the paper's (DS everywhere) and regular convs everywhere all build, run and train."""
    cfg = _cfg(name)
    cfg.MODEL.DECODER.CONV_TYPE, cfg.MODEL.DECODER.ASPP_CONV_TYPE = conv_type, aspp_conv_type
    cfg.MODEL.DECODER.CONV_STACK = 2
    model = build_model(cfg)
    atrous = model.decoder.modules()
    grouped = [m for m in atrous if isinstance(m, torch.nn.Conv2d) and m.dilation[0] > 1 and m.groups > 1]
    assert bool(grouped) == (aspp_conv_type == "depthwise_separable_conv")
    out = model(torch.randn(2, 3, 64, 96), _targets(2, 64, 96))
    out["loss"].backward()


def test_unknown_conv_type_lists_the_registered_ones():
    cfg = _cfg("panoptic_deeplab")
    cfg.MODEL.DECODER.CONV_TYPE = "separable"
    with pytest.raises(KeyError, match="depthwise_separable_conv"):
        build_model(cfg)


# (feature key, its channels, low-level keys and their channels) a Panoptic-DeepLab config uses for each family
FAMILY_KEYS = {
    "mobilenet_v2": ("layer_18", 320, ("layer_7", "layer_4"), (32, 24)),
    "mnasnet1_0": ("layer_14", 320, ("layer_10", "layer_9"), (40, 24)),
    "xception65": ("res5", 2048, ("res3", "res2"), (728, 256)),
    "hrnet18": ("res5", 144, ("res4", "res3", "res2"), (72, 36, 18)),
}


@pytest.mark.parametrize("backbone", sorted(FAMILY_KEYS))
def test_panoptic_deeplab_on_every_backbone_family(backbone):
    cfg = _cfg("panoptic_deeplab", backbone)
    cfg.MODEL.BACKBONE.META = ""
    key, channels, low_keys, low_channels = FAMILY_KEYS[backbone]
    cfg.MODEL.DECODER.FEATURE_KEY, cfg.MODEL.DECODER.IN_CHANNELS = key, channels
    cfg.MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_KEY, cfg.MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_CHANNELS = low_keys, low_channels
    cfg.MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_CHANNELS_PROJECT = (64, 32, 16)[-len(low_keys):]
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.LOW_LEVEL_CHANNELS_PROJECT = (32, 16, 8)[-len(low_keys):]
    if backbone == "hrnet18":
        cfg.MODEL.BACKBONE.DILATION = (False, False, False)
    model = build_model(cfg)
    out = model(torch.randn(2, 3, 64, 96), _targets(2, 64, 96))
    assert out["semantic"].shape == (2, 5, 64, 96) and out["offset"].shape == (2, 2, 64, 96)
    out["loss"].backward()
