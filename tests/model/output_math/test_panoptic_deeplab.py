import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.config import get_default_config
from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.data.datasets import render_scene
from segmentation.data.datasets.base import PanopticDataset
from segmentation.data.transforms import PanopticTargetGenerator, encode_panoptic
from segmentation.evaluation import to_coco_panoptic
from segmentation.model.loss import WeightedL1, WeightedMSE, build_loss
from segmentation.model.output_math import OMCompositionError, compose
from segmentation.model.output_math.build import _names
from segmentation.model.post_processing import get_panoptic_segmentation
from tests.model.test_post_processing import _realistic_outputs

TARGETS = {"semantic": "semantic_truth", "center": "center_truth", "offset": "offset_truth",
           "semantic_weights": "semantic_weights_truth", "center_weights": "center_weights_truth",
           "offset_weights": "offset_weights_truth"}


def _cfg(**dataset):
    cfg = get_default_config()
    cfg.DATASET.NUM_CLASSES = 7
    cfg.DATASET.GAUSSIAN_SIGMA = 4
    cfg.DATASET.SMALL_INSTANCE_AREA = 200
    cfg.DATASET.SMALL_INSTANCE_WEIGHT = 3
    cfg.POST_PROCESSING.STUFF_AREA = 32
    cfg.OM.MAX_INSTANCES = 64
    for k, v in dataset.items():
        setattr(cfg.DATASET, k, v)
    return cfg


def _losses(cfg):
    return {"semantic": build_loss(cfg.LOSS.SEMANTIC, 255), "center": WeightedMSE(), "offset": WeightedL1()}


def _om(pan, outputs=None, mixins=(), cfg=None, extra=None):
    cfg = cfg or _cfg()
    raw = {"panoptic_truth": torch.as_tensor(pan)}
    raw.update(outputs or {})
    raw.update(extra or {})
    return compose("panoptic-deeplab", mixins)(raw, config=cfg, metadata=META, losses=_losses(cfg))


def _cpu_targets(pan, cfg):
    """The loader's generator applied to the segments of a train-id-encoded map."""
    ids, segs = to_coco_panoptic(pan, META)
    gen = PanopticTargetGenerator(255, lambda x: x, META.thing_ids, sigma=cfg.DATASET.GAUSSIAN_SIGMA,
                                  ignore_stuff_in_offset=cfg.DATASET.IGNORE_STUFF_IN_OFFSET,
                                  small_instance_area=cfg.DATASET.SMALL_INSTANCE_AREA,
                                  small_instance_weight=cfg.DATASET.SMALL_INSTANCE_WEIGHT,
                                  ignore_crowd_in_semantic=cfg.DATASET.IGNORE_CROWD_IN_SEMANTIC)
    return gen(ids, segs)


def _assert_targets_equal(om, pans, cfg):
    for i, pan in enumerate(pans):
        ref = _cpu_targets(pan, cfg)
        for key, var in TARGETS.items():
            ours = getattr(om, var)()[i]
            expected = ref[key]
            assert torch.equal(ours.to(expected.dtype), expected), key  # offsets included: bit-identical


def test_task_variables_on_a_hand_made_map():
    v = META.void_label
    pan = torch.tensor([[[0, 0, 4001, 4001, v],
                         [1000, 5000, 5000, 4002, v]]])
    om = _om(pan)
    assert om.semantic_truth().tolist() == [[[0, 0, 4, 4, 255], [1, 5, 5, 4, 255]]]
    assert om.thing_mask_truth().tolist() == [[[False, False, True, True, False], [False, True, True, True, False]]]
    assert om.crowd_mask_truth().tolist() == [[[False] * 5, [False, True, True, False, False]]]
    assert om.void_mask_truth().tolist() == [[[False] * 4 + [True], [False] * 4 + [True]]]
    assert om.instance_truth().tolist() == [[[-1, -1, 4001, 4001, -1], [-1, -1, -1, 4002, -1]]]
    assert om.centroids_truth()[0, 4001].tolist() == [0.0, 2.5]
    assert om.offset_truth()[0, :, 0, 2].tolist() == [0.0, 0.5]
    assert om.center_weights_truth().tolist() == [[[1, 1, 1, 1, 0], [1, 0, 0, 1, 0]]]
    assert om.offset_weights_truth().tolist() == [[[0, 0, 1, 1, 0], [0, 0, 0, 1, 0]]]
    cfg = _cfg(IGNORE_CROWD_IN_SEMANTIC=True)
    assert _om(pan, cfg=cfg).semantic_truth()[0, 1].tolist() == [1, 255, 255, 4, 255]


@pytest.mark.parametrize("options", [{}, {"IGNORE_STUFF_IN_OFFSET": False, "IGNORE_CROWD_IN_SEMANTIC": True}])
def test_targets_bit_identical_to_the_cpu_generator_on_a_batch_of_scenes(options):
    cfg = _cfg(**options)
    rng = np.random.default_rng(0)
    pans = []
    for _ in range(3):
        _, ids, segs = render_scene(rng, 64, 96, max_objects=10, crowd_prob=0.7)
        pans.append(encode_panoptic(ids, segs, META))
    om = _om(torch.stack(pans), cfg=cfg)
    _assert_targets_equal(om, pans, cfg)


def test_targets_bit_identical_at_the_papers_crop_size():
    """1025x2049, Table 1's crops: there the packed (y, x) coordinate sums could overflow int64, so the centres of
    mass take one integer sum per coordinate."""
    h, w = 1025, 2049
    assert (h * w * (h - 1)) << (h * w * (w - 1)).bit_length() >= 2 ** 63
    cfg = _cfg()
    _, ids, segs = render_scene(np.random.default_rng(1), h, w, max_objects=12, crowd_prob=0.3)
    pan = encode_panoptic(ids, segs, META)
    _assert_targets_equal(_om(pan[None], cfg=cfg), [pan], cfg)


@st.composite
def panoptic_maps(draw):
    """Random maps made of rectangles of random segments (stuff, thing instances, crowd, void)."""
    h, w = draw(st.integers(4, 40)), draw(st.integers(4, 40))
    pan = np.full((h, w), META.void_label, np.int64)
    for _ in range(draw(st.integers(0, 12))):
        cls = draw(st.integers(0, 6))
        inst = draw(st.integers(0, 5)) if cls in META.thing_ids else 0
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
        pan[y0:y1, x0:x1] = cls * 1000 + inst
    return torch.as_tensor(pan)


@settings(max_examples=60, deadline=None)
@given(pan=panoptic_maps(), sigma=st.integers(1, 6))
def test_targets_bit_identical_on_random_maps(pan, sigma):
    cfg = _cfg(GAUSSIAN_SIGMA=sigma)
    _assert_targets_equal(_om(pan[None], cfg=cfg), [pan], cfg)


def _outputs(seed):
    logits, hmp, off = _realistic_outputs(seed)
    return {"semantic_pred": logits, "center_pred": hmp, "offset_pred": off}


@pytest.mark.parametrize("seed", range(3))
def test_decoding_identical_to_the_pure_function(seed):
    cfg = _cfg()
    outs = [_outputs(seed), _outputs(seed + 10)]
    batch = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    pan = torch.full(batch["semantic_pred"].shape[:1] + batch["semantic_pred"].shape[2:], META.void_label)
    om = _om(pan, batch, cfg=cfg)
    pp = cfg.POST_PROCESSING
    for i, o in enumerate(outs):
        ref, ctr = get_panoptic_segmentation(o["semantic_pred"], o["center_pred"], o["offset_pred"], META.thing_ids,
                                             1000, pp.STUFF_AREA, META.void_label, pp.CENTER_THRESHOLD,
                                             pp.NMS_KERNEL, pp.TOP_K_INSTANCE)
        assert torch.equal(om.panoptic_pred()[i], ref[0])
        assert torch.equal(om.centroids_pred()[i], ctr[0])
        classes = om.instance_class_pred()[i]
        assert classes.shape == (ctr.shape[1],)
        things = ref[0][ref[0] // 1000 != 255]
        assert set((things[things % 1000 > 0] // 1000).tolist()) == set(classes[classes >= 0].tolist())


def test_losses_equal_the_conventional_model_losses():
    from segmentation.model.meta_arch.base import SegmentationModel
    cfg = _cfg()
    rng = np.random.default_rng(1)
    _, ids, segs = render_scene(rng, 64, 96)
    pan = encode_panoptic(ids, segs, META)[None]
    g = torch.Generator().manual_seed(0)
    outputs = {"semantic": torch.randn(1, 7, 64, 96, generator=g), "center": torch.rand(1, 1, 64, 96, generator=g),
               "offset": torch.randn(1, 2, 64, 96, generator=g)}
    om = _om(pan, {f"{k}_pred": v for k, v in outputs.items()}, cfg=cfg)
    ref = _cpu_targets(pan[0], cfg)
    targets = {k: v[None] for k, v in ref.items() if isinstance(v, torch.Tensor)}
    model = SegmentationModel(torch.nn.Identity(), cfg)
    losses = _losses(cfg)
    for name, target in (("semantic", "semantic"), ("center", "center"), ("offset", "offset")):
        model._register_loss(name, losses[name], name, target, f"{target}_weights",
                             getattr(cfg.LOSS, name.upper()).WEIGHT)
    conventional = model.losses(outputs, targets)
    for key in ("semantic_loss", "center_loss", "offset_loss", "loss"):
        assert torch.allclose(om.logged_losses()[key], conventional[key]), key


def test_oracles_decode_the_ground_truth():
    cfg = _cfg()
    cfg.POST_PROCESSING.STUFF_AREA = 0
    rng = np.random.default_rng(2)
    _, ids, segs = render_scene(rng, 64, 96, crowd_prob=0.0)
    pan = encode_panoptic(ids, segs, META)[None]
    om = _om(pan, {"semantic_pred": torch.zeros(1, 7, 64, 96)},
             mixins=("oracle-semantics", "oracle-centers", "oracle-offsets"), cfg=cfg)
    assert om.semantic_logits_pred().shape == (1, 7, 64, 96)
    pred = om.panoptic_pred()
    labelled = pan != META.void_label
    # same partition of the labelled pixels into segments, same classes
    assert torch.equal(pred[labelled] // 1000, pan[labelled] // 1000)
    pairs = torch.unique(torch.stack([pred[labelled], pan[labelled]]), dim=1)
    assert pairs.shape[1] == torch.unique(pan[labelled]).numel() == torch.unique(pred[labelled]).numel()


def test_learnable_centers_are_per_image_and_differentiable():
    pan = torch.full((2, 4, 6), 1000)
    pan[:, 1:3, 1:3] = 4001  # the same instance in both images
    off = torch.zeros(2, 2, 4, 6, requires_grad=True)
    with torch.no_grad():
        off[1, 1] += 2.0  # image 1 votes 2 px to the right
    om = _om(pan, {"offset_pred": off}, mixins=("learnable-centers",))
    cen = om.centroids_truth()
    assert cen[0, 4001].tolist() == [1.5, 1.5] and cen[1, 4001].tolist() == [1.5, 3.5]
    assert om.center_truth()[1, 0, 1, 3].item() == 1.0  # the heatmap follows the moved centre
    om.offset_truth().sum().backward()
    assert off.grad is not None and off.grad.abs().sum() > 0
    cfg = _cfg()
    cfg.OM.LEARNABLE_CENTERS.DETACH = True
    assert not _om(pan, {"offset_pred": off}, mixins=("learnable-centers",), cfg=cfg).offset_truth().requires_grad


def test_learnable_centers_with_oracle_offsets_is_refused_at_build_time():
    with pytest.raises(OMCompositionError, match="learnable-centers.*oracle-offsets"):
        compose("panoptic-deeplab", ("oracle-offsets", "learnable-centers"))


def test_push_pull_nearest_centre_and_loss():
    pan = torch.full((1, 1, 8), 1000)
    pan[0, 0, 0:2] = 4001  # centroid x = 0.5
    pan[0, 0, 6:8] = 4002  # centroid x = 6.5
    off = torch.zeros(1, 2, 1, 8)
    om = _om(pan, {"offset_pred": off}, mixins=("push-pull",))
    assert om.closest_centroid_truth()[0, 0, [0, 1, 6, 7]].tolist() == [4001, 4001, 4002, 4002]
    assert om.push_pull_loss().item() == 0.0  # every vote is nearest to its own centre
    off2 = off.clone()
    off2[0, 1, 0, 1] = 5.0  # pixel 1 of 4001 votes at x = 6: 0.5 from 4002's centre, 5.5 from its own
    om2 = _om(pan, {"offset_pred": off2}, mixins=("push-pull",))
    assert om2.closest_centroid_truth()[0, 0, 1].item() == 4002
    assert om2.push_pull_loss().item() == pytest.approx((5.5 - 0.5) / (2 * 4))
    base = _om(pan, {"offset_pred": off2})
    assert om2.offset_loss().item() == pytest.approx(base.offset_loss().item() + om2.push_pull_loss().item())


def test_cpu_tensors_reads_the_loader_targets():
    cfg = _cfg()
    rng = np.random.default_rng(3)
    _, ids, segs = render_scene(rng, 32, 48)
    pan = encode_panoptic(ids, segs, META)
    ref = _cpu_targets(pan, cfg)
    extra = {f"{k}_truth": ref[k][None] for k in TARGETS}
    om = _om(pan[None], mixins=("cpu-tensors",), cfg=cfg, extra=extra)
    base = _om(pan[None], cfg=cfg)
    for var in TARGETS.values():
        assert torch.allclose(getattr(om, var)().float(), getattr(base, var)().float(), atol=1e-4, rtol=0), var
    with pytest.raises(KeyError, match="DATASET.PAN_ONLY False"):
        _om(pan[None], mixins=("cpu-tensors",), cfg=cfg).center_truth()


def test_calls_per_step_do_not_depend_on_the_instance_count():
    def calls(max_objects):
        scenes = [render_scene(np.random.default_rng(s), 64, 96, max_objects=max_objects) for s in range(10)]
        _, ids, segs = max(scenes, key=lambda scene: len(scene[2]))
        pan = encode_panoptic(ids, segs, META)[None]
        outputs = {"semantic_pred": torch.randn(1, 7, 64, 96), "center_pred": torch.rand(1, 1, 64, 96),
                   "offset_pred": torch.randn(1, 2, 64, 96)}
        om = _om(pan, outputs)
        om.logged_losses()
        return sum(r["hits"] + r["misses"] for r in om.stats().values()), len(segs)

    (few, n_few), (many, n_many) = calls(2), calls(30)
    assert n_many > n_few and few == many


@pytest.mark.parametrize("mixin", [m for m in _names("mixin") if not m.startswith("toy")])
def test_a_training_step_through_every_mixin(mixin):
    from segmentation.config import load_config
    from segmentation.data import build_dataset, collate
    from segmentation.model import build_model
    from tests.conftest import ROOT
    cfg = load_config(f"{ROOT}/configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml", [
        "OM.NAME", "panoptic-deeplab", "OM.MIXINS", f"('{mixin}',)", "DATASET.SYNTHETIC.IMAGE_SIZE", "(64, 96)",
        "DATASET.CROP_SIZE", "(64, 96)", "MODEL.DECODER.DECODER_CHANNELS", "32"])
    model = build_model(cfg)
    batch = collate([build_dataset(cfg, "train", is_train=True)[i] for i in range(2)])
    om = model(batch["image"], batch)
    logged = om.logged_losses()
    assert all(torch.isfinite(v) for v in logged.values())
    logged["loss"].backward()
    assert any(p.grad is not None for p in model.parameters())
    assert set(model.state_dict()) == set(model.net.state_dict())


class _OneImage(PanopticDataset):
    """A one-image training dataset of a hand-made segment-id map (no augmentation)."""

    metadata = META

    def __init__(self, ids, segments, **kw):
        super().__init__("train", is_train=True, **kw)
        self.ids, self.segments = ids, segments

    def __len__(self):
        return 1

    def load(self, index):
        return {"image": np.zeros((*self.ids.shape, 3), np.uint8), "panoptic": self.ids, "segments": self.segments,
                "file_name": "one"}


def _assert_pan_only_equals_the_loader(ids, segments, cfg):
    """The OM targets of a PAN_ONLY training sample equal the CPU generator's targets of the same sample."""
    d = cfg.DATASET
    gen = PanopticTargetGenerator(255, lambda x: x, META.thing_ids, sigma=d.GAUSSIAN_SIGMA,
                                  ignore_stuff_in_offset=d.IGNORE_STUFF_IN_OFFSET,
                                  small_instance_area=d.SMALL_INSTANCE_AREA,
                                  small_instance_weight=d.SMALL_INSTANCE_WEIGHT,
                                  ignore_crowd_in_semantic=d.IGNORE_CROWD_IN_SEMANTIC)
    loader = _OneImage(ids, segments, target_generator=gen)[0]
    pan_only = _OneImage(ids, segments, target_generator=gen, pan_only=True)[0]
    assert "center" not in pan_only and pan_only["crowd_table"].any() == any(s["iscrowd"] for s in segments)
    om = _om(pan_only["panoptic"][None], cfg=cfg, extra={"crowd_table_truth": pan_only["crowd_table"][None]})
    for key, var in TARGETS.items():
        ours = getattr(om, var)()[0]
        assert torch.equal(ours.to(loader[key].dtype), loader[key]), key


def test_pan_only_keeps_several_crowd_segments_of_one_class_apart():
    """COCO-format data: two crowd regions of one class (and an instance of it) far apart. The train-id encoding
    alone would merge the two crowds into one segment, with one Gaussian at the centroid of their union."""
    ids = np.zeros((32, 64), np.int32)
    ids[:, :20] = 1  # stuff
    ids[2:10, 22:30] = 2  # crowd of class 4
    ids[20:30, 50:62] = 3  # another crowd of class 4
    ids[12:18, 40:46] = 4  # an instance of class 4
    segments = [{"id": 1, "category_id": 0, "iscrowd": 0}, {"id": 2, "category_id": 4, "iscrowd": 1},
                {"id": 3, "category_id": 4, "iscrowd": 1}, {"id": 4, "category_id": 4, "iscrowd": 0}]
    for options in ({}, {"IGNORE_STUFF_IN_OFFSET": False, "IGNORE_CROWD_IN_SEMANTIC": True}):
        _assert_pan_only_equals_the_loader(ids, segments, _cfg(**options))


@st.composite
def segment_maps(draw):
    """Random segment-id maps of rectangles, each its own segment of a random class, crowd flags on things."""
    h, w = draw(st.integers(4, 40)), draw(st.integers(4, 40))
    ids = np.zeros((h, w), np.int32)
    segments = []
    for seg_id in range(1, draw(st.integers(1, 12)) + 1):
        cls = draw(st.integers(0, 6))
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        ids[y0:draw(st.integers(y0 + 1, h)), x0:draw(st.integers(x0 + 1, w))] = seg_id
        segments.append({"id": seg_id, "category_id": cls,
                         "iscrowd": int(cls in META.thing_ids and draw(st.booleans()))})
    present = set(np.unique(ids).tolist())
    return ids, [s for s in segments if s["id"] in present]


@settings(max_examples=60, deadline=None)
@given(data=segment_maps(), sigma=st.integers(1, 6))
def test_pan_only_targets_equal_the_loader_on_random_crowded_maps(data, sigma):
    _assert_pan_only_equals_the_loader(*data, _cfg(GAUSSIAN_SIGMA=sigma))
