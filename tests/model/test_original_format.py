"""Checkpoints of the original repository: the rename tables map every key of the original's models one to one onto
ours (key lists read from the original's models), and an original-format checkpoint made with the original code
gives the original's outputs through our configs, on the conventional and the OM path."""
import os
import subprocess
import sys

import pytest
import torch

from segmentation.config import load_config
from segmentation.model import build_model
from segmentation.model.meta_arch import META_ARCH_REGISTRY
from segmentation.model.original_format import convert_original_state, is_original_state, model_state_dict
from segmentation.model.post_processing.instance_post_processing import get_panoptic_segmentation
from tests.conftest import ROOT

REFERENCE = os.environ.get("ORIGINAL_CHECKPOINTS",
                           os.path.join(ROOT, "..", "shared", "reference", "original-checkpoints"))
FIXTURE = os.path.join(REFERENCE, "fixture")
needs_reference = pytest.mark.skipif(not os.path.isdir(FIXTURE), reason=f"no {FIXTURE} (set ORIGINAL_CHECKPOINTS)")
NO_DOWNLOAD = ["MODEL.BACKBONE.PRETRAINED", "False", "MODEL.BACKBONE.WEIGHTS", ""]

# the original's config (its key list in shared/) -> our copy of it
ORIGINAL_CONFIGS = {
    "panoptic_deeplab_MBNV2_100_os32_cityscapes_bs16_lr_x2": "panoptic_deeplab_MBNV2_os32_cityscapes.yaml",
    "panoptic_deeplab_R50_os32_cityscapes": "panoptic_deeplab_R50_os32_cityscapes.yaml",
    "panoptic_deeplab_R101_os32_cityscapes": "panoptic_deeplab_R101_os32_cityscapes.yaml",
    "panoptic_deeplab_X101_32x8d_os32_cityscapes": "panoptic_deeplab_X101_32x8d_os32_cityscapes.yaml",
    "panoptic_deeplab_X65_os32_cityscapes_lr_x10": "panoptic_deeplab_X65_os32_cityscapes.yaml",
    "panoptic_deeplab_H48_os4_cityscapes": "panoptic_deeplab_H48_os4_cityscapes.yaml",
}


def _original_shapes(name):
    """{key: shape} of the original's model built from its config ``name`` (the list in shared/)."""
    shapes = {}
    with open(os.path.join(REFERENCE, name + ".txt")) as f:
        for line in f:
            if not line.startswith("#"):
                key, _, shape = line.rstrip("\n").split("\t")
                shapes[key] = tuple(int(n) for n in shape.strip("()").split(",") if n.strip())
    return shapes


def _our_model(config, *opts):
    return build_model(load_config(os.path.join(ROOT, "configs", "cityscapes", config), [*NO_DOWNLOAD, *opts]))


def _assert_one_to_one(original_shapes, model):
    state = {k: torch.empty(s) for k, s in original_shapes.items()}
    converted, _ = convert_original_state(state)
    assert len(converted) == len(state)  # no two original keys collide
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    unused = set(model.unused_state_keys())
    assert sorted(set(converted) - set(ours)) == []  # nothing left over
    assert sorted(set(ours) - set(converted) - unused) == []  # nothing missing
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: ours[k] for k in converted}


@needs_reference
@pytest.mark.parametrize("original", sorted(ORIGINAL_CONFIGS))
def test_every_original_key_maps_to_exactly_one_of_ours(original):
    _assert_one_to_one(_original_shapes(original), _our_model(ORIGINAL_CONFIGS[original]))


def _bn(prefix, n):
    return {f"{prefix}.{leaf}": (n,) for leaf in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def _original_aspp(prefix, cin, cout):
    keys = {f"{prefix}.convs.0.0.weight": (cout, cin, 1, 1), **_bn(f"{prefix}.convs.0.1", cout)}
    for i in (1, 2, 3):
        keys |= {f"{prefix}.convs.{i}.0.weight": (cout, cin, 3, 3), **_bn(f"{prefix}.convs.{i}.1", cout)}
    return keys | {f"{prefix}.convs.4.aspp_pooling.1.weight": (cout, cin, 1, 1),
                   f"{prefix}.project.0.weight": (cout, 5 * cout, 1, 1), **_bn(f"{prefix}.project.1", cout)}


def _original_semantic_deeplab(meta):
    """The original's DeepLabV3 / V3+ keys (its decoder modules, ResNet-50 backbone), 19 classes."""
    backbone = {k: s for k, s in _original_shapes("panoptic_deeplab_R50_os32_cityscapes").items()
                if k.startswith("backbone.")}
    decoder = _original_aspp("decoder.aspp", 2048, 256)
    if meta == "deeplabv3":  # classifier = conv 3x3, BN, ReLU, conv 1x1
        decoder |= {"decoder.classifier.0.weight": (256, 256, 3, 3), **_bn("decoder.classifier.1", 256),
                    "decoder.classifier.3.weight": (19, 256, 1, 1), "decoder.classifier.3.bias": (19,)}
    else:  # project 1x1 (48), fuse = two 3x3 depthwise-separable convs, classifier 1x1
        decoder |= {"decoder.project.0.weight": (48, 256, 1, 1), **_bn("decoder.project.1", 48)}
        for s, cin in enumerate((304, 256)):
            decoder |= {f"decoder.fuse.{s}.0.0.weight": (cin, 1, 3, 3), **_bn(f"decoder.fuse.{s}.0.1", cin),
                        f"decoder.fuse.{s}.1.weight": (256, cin, 1, 1), **_bn(f"decoder.fuse.{s}.2", 256)}
        decoder |= {"decoder.classifier.weight": (19, 256, 1, 1), "decoder.classifier.bias": (19,)}
    return backbone | decoder


@needs_reference
@pytest.mark.parametrize("meta", ["deeplabv3", "deeplabv3plus"])
def test_the_original_semantic_deeplabs_map_one_to_one(meta):
    model = _our_model("deeplabv3plus_R50_os16_cityscapes.yaml", "MODEL.META_ARCHITECTURE", meta)
    _assert_one_to_one(_original_semantic_deeplab(meta), model)


# backbone -> (ASPP feature, its channels, low-level feature, its channels)
BACKBONE_FEATURES = {"resnet18": ("res5", 512, "res2", 64), "mobilenet_v2": ("layer_18", 320, "layer_4", 24),
                     "xception65": ("res5", 2048, "res2", 256), "hrnet18": ("res5", 144, "res2", 18)}


@pytest.mark.parametrize("meta", sorted(META_ARCH_REGISTRY.names()))
@pytest.mark.parametrize("backbone", sorted(BACKBONE_FEATURES))
def test_our_own_checkpoints_are_never_taken_for_the_original_format(synthetic_cfg, meta, backbone):
    key, channels, low, low_channels = BACKBONE_FEATURES[backbone]
    m = synthetic_cfg.MODEL
    m.META_ARCHITECTURE, m.BACKBONE.NAME, m.BACKBONE.META = meta, backbone, ""
    m.BACKBONE.DILATION = (False, False, False)
    m.DECODER.FEATURE_KEY, m.DECODER.IN_CHANNELS = key, channels
    m.PANOPTIC_DEEPLAB.LOW_LEVEL_KEY, m.PANOPTIC_DEEPLAB.LOW_LEVEL_CHANNELS = (low,), (low_channels,)
    m.PANOPTIC_DEEPLAB.LOW_LEVEL_CHANNELS_PROJECT, m.PANOPTIC_DEEPLAB.INSTANCE.LOW_LEVEL_CHANNELS_PROJECT = (32,), (16,)
    m.DEEPLABV3PLUS.LOW_LEVEL_KEY, m.DEEPLABV3PLUS.LOW_LEVEL_CHANNELS = low, low_channels
    assert not is_original_state(build_model(synthetic_cfg).state_dict())


def _fixture():
    return torch.load(os.path.join(FIXTURE, "mbnv2_os32_random_outputs.pt"), weights_only=False)


def _fixture_cfg(config, checkpoint, *opts):
    return load_config(os.path.join(ROOT, "configs", "cityscapes", config), [
        *NO_DOWNLOAD, "TEST.MODEL_FILE", str(checkpoint), "TEST.CROP_SIZE", "(129, 257)",
        "POST_PROCESSING.STUFF_AREA", "32", "POST_PROCESSING.TOP_K_INSTANCE", "200", *opts])


def _assert_original_outputs(out, ref):
    for key in ("semantic", "center", "offset"):
        assert (out[key] - ref[key]).abs().max() <= 1e-4, key
    assert torch.equal(out["semantic"].argmax(1), ref["semantic_pred"])


def _checkpoint_pth_tar(tmp_path):
    """The fixture's weights saved as the original's checkpoint.pth.tar (DDP-prefixed keys, optimizer state)."""
    state = torch.load(os.path.join(FIXTURE, "mbnv2_os32_random_final_state.pth"), weights_only=True)
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"start_iter": 5, "state_dict": {f"module.{k}": v for k, v in state.items()},
                "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {"last_epoch": 4}}, path)
    return path


@needs_reference
@pytest.mark.parametrize("file_format", ["final_state.pth", "checkpoint.pth.tar"])
def test_the_original_checkpoint_gives_the_original_outputs(tmp_path, caplog, file_format):
    """The original's MobileNetV2 os32 model (random weights, saved by the original code) through our copy of its
    config: semantic logits, centre heatmap and offsets within 1e-4, the same semantic and panoptic maps."""
    from _common import build_inference_model

    from segmentation.engine.inference import predict
    ref = _fixture()
    path = (os.path.join(FIXTURE, "mbnv2_os32_random_final_state.pth") if file_format == "final_state.pth" else
            _checkpoint_pth_tar(tmp_path))
    caplog.set_level("INFO")
    cfg = _fixture_cfg("panoptic_deeplab_MBNV2_os32_cityscapes.yaml", path)
    model, _ = build_inference_model(cfg)
    assert "in the original repository's format (panoptic_deeplab)" in caplog.text
    out = predict(model.eval(), ref["image"])
    _assert_original_outputs(out, ref)
    pp = ref["post_processing"]
    panoptic, _ = get_panoptic_segmentation(out["semantic"], out["center"], out["offset"], pp["thing_list"],
                                            pp["label_divisor"], pp["stuff_area"], pp["void_label"],
                                            pp["threshold"], pp["nms_kernel"], pp["top_k"])
    assert torch.equal(panoptic, ref["panoptic_pred"])


@needs_reference
def test_the_original_checkpoint_decodes_to_the_original_panoptic_map_through_the_om():
    from _common import build_inference_model
    ref = _fixture()
    cfg = _fixture_cfg("panoptic_deeplab_MBNV2_os32_cityscapes_om.yaml",
                       os.path.join(FIXTURE, "mbnv2_os32_random_final_state.pth"))
    model, _ = build_inference_model(cfg)
    with torch.no_grad():
        om = model.eval()(ref["image"])
    assert torch.equal(om.semantic_pred(), ref["semantic_pred"])
    assert torch.equal(om.panoptic_pred(), ref["panoptic_pred"])


@needs_reference
def test_convert_checkpoint_writes_our_format_that_loads_strictly(tmp_path):
    out = tmp_path / "converted.pth"
    config = os.path.join(ROOT, "configs", "cityscapes", "panoptic_deeplab_MBNV2_os32_cityscapes.yaml")
    r = subprocess.run([sys.executable, "tools/convert_checkpoint.py", str(_checkpoint_pth_tar(tmp_path)), str(out),
                        "--cfg", config], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "original repository's format (panoptic_deeplab): 128 of 518 keys renamed" in r.stdout
    assert "fits" in r.stdout
    state = model_state_dict(torch.load(out, weights_only=True), str(out))
    assert not is_original_state(state)
    from _common import build_inference_model

    from segmentation.engine.inference import predict
    model, _ = build_inference_model(_fixture_cfg("panoptic_deeplab_MBNV2_os32_cityscapes.yaml", out))
    ref = _fixture()
    _assert_original_outputs(predict(model.eval(), ref["image"]), ref)
    again = subprocess.run([sys.executable, "tools/convert_checkpoint.py", str(out), str(tmp_path / "x.pth")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "needs no conversion" in again.stderr


def test_a_decoder_without_an_original_meta_architecture_is_refused():
    state = {"decoder.other.aspp.convs.4.aspp_pooling.1.weight": torch.zeros(1)}
    assert is_original_state(state)
    with pytest.raises(ValueError, match="none of the decoders"):
        convert_original_state(state)
