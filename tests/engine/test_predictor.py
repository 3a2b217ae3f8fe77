"""The Python inference API: a config and a checkpoint, then maps and segments_info for images."""
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.config import dump_config, load_config
from segmentation.data.datasets import render_scene
from segmentation.engine.inference import predict
from segmentation.model import build_model
from segmentation.model.post_processing import get_panoptic_segmentation
from tests.conftest import ROOT
from tests.fixtures.images import save_turned

CFG = os.path.join(ROOT, "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml")
OM_CFG = os.path.join(ROOT, "configs/synthetic/om_panoptic_deeplab_mbv2_synthetic.yaml")
SMALL = ["MODEL.DECODER.DECODER_CHANNELS", "32", "POST_PROCESSING.CENTER_THRESHOLD", "0.0"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = load_config(CFG, SMALL)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return str(path)


def _image(seed=0):
    return render_scene(np.random.default_rng(seed), 64, 96)[0]


def test_three_lines_from_a_notebook(checkpoint, tmp_path):
    from segmentation import Predictor
    predictor = Predictor(CFG, checkpoint, opts=SMALL)
    Image.fromarray(_image()).save(tmp_path / "a.png")
    result = predictor(str(tmp_path / "a.png"))
    assert result.semantic.shape == result.panoptic.shape == result.instance.shape == (64, 96)
    same = predictor(_image())  # an array gives the same as its file
    assert np.array_equal(same.panoptic, result.panoptic)


def test_the_maps_are_the_decoding_of_the_network_outputs(checkpoint):
    from segmentation import Predictor
    predictor = Predictor(CFG, checkpoint, opts=SMALL)
    image = _image(1)
    result = predictor(image)
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (predictor.cfg.DATASET.MEAN, predictor.cfg.DATASET.STD))
    out = predict(predictor.model.net, ((x - mean) / std)[None])
    m, pp = predictor.metadata, predictor.cfg.POST_PROCESSING
    panoptic, _ = get_panoptic_segmentation(out["semantic"], out["center"], out["offset"], m.thing_ids,
                                            m.label_divisor, pp.STUFF_AREA, m.void_label, pp.CENTER_THRESHOLD,
                                            pp.NMS_KERNEL, pp.TOP_K_INSTANCE)
    assert np.array_equal(result.panoptic, panoptic[0].numpy())
    assert np.array_equal(result.semantic, out["semantic"].argmax(1)[0].numpy())
    things = np.isin(result.panoptic // m.label_divisor, list(m.thing_ids))
    assert np.array_equal(result.instance > 0, things & (result.panoptic != m.void_label))


def test_segments_info_describes_every_segment(checkpoint):
    from segmentation import Predictor
    predictor = Predictor(CFG, checkpoint, opts=SMALL)
    result = predictor(_image(2))
    m = predictor.metadata
    ids = set(np.unique(result.panoptic).tolist()) - {m.void_label}
    assert {s["id"] for s in result.segments_info} == ids and ids
    for s in result.segments_info:
        ys, xs = np.nonzero(result.panoptic == s["id"])
        assert s["area"] == len(ys) and s["category_id"] == s["id"] // m.label_divisor
        assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert s["isthing"] == (s["category_id"] in m.thing_ids)
        assert s["category"] == m.class_names[s["category_id"]]


def test_batches_the_om_path_and_test_time_augmentation(checkpoint):
    from segmentation import Predictor
    conventional = Predictor(CFG, checkpoint, opts=SMALL)
    om = Predictor(OM_CFG, checkpoint, opts=SMALL)
    images = [_image(3), _image(4)]
    a, b = conventional(images), om(images, variables=("center_pred",))
    assert len(a) == len(b) == 2
    assert all(np.array_equal(x.panoptic, y.panoptic) for x, y in zip(a, b))
    assert b[0].variables["center_pred"].shape == (1, 1, 64, 96)
    flipped = Predictor(CFG, checkpoint, opts=[*SMALL, "TEST.FLIP_TEST", "True"])(images[0])
    assert flipped.panoptic.shape == (64, 96)


def test_a_file_is_read_upright(checkpoint, tmp_path):
    from segmentation import Predictor
    predictor = Predictor(CFG, checkpoint, opts=SMALL)
    image = _image(2)
    save_turned(tmp_path / "portrait.png", np.rot90(image, 1).copy(), 6)  # stored on its side, tagged upright
    result = predictor(str(tmp_path / "portrait.png"))
    assert np.array_equal(result.panoptic, predictor(image).panoptic)


def test_a_wrong_image_is_explained(checkpoint):
    from segmentation import Predictor
    predictor = Predictor(CFG, checkpoint, opts=SMALL)
    with pytest.raises(ValueError, match="RGB uint8 image"):
        predictor(np.zeros((64, 96), dtype=np.float32))


FOCAL_CFG = os.path.join(ROOT, "configs/synthetic/om_focal_centers.yaml")


@pytest.mark.parametrize("trained, evaluated, warns", [
    (FOCAL_CFG, OM_CFG, True),  # its centre logits would be thresholded as a heatmap
    (OM_CFG, FOCAL_CFG, True),  # a heatmap read as logits
    (FOCAL_CFG, FOCAL_CFG, False),
    (CFG, OM_CFG, False),  # a conventional model is read by the base formulation
    (OM_CFG, os.path.join(ROOT, "configs/synthetic/om_oracle_centers.yaml"), False),  # an oracle study
    (None, FOCAL_CFG, False),  # a checkpoint without its config (older, or the original's): nothing to compare
])
def test_evaluating_with_another_reading_of_the_outputs_warns(tmp_path, caplog, monkeypatch, trained, evaluated,
                                                              warns):
    from segmentation.engine.predictor import build_inference_model
    from segmentation.utils.checkpoint import save_checkpoint
    cfg = load_config(trained or CFG, SMALL)
    path = str(tmp_path / "final_state.pth")
    save_checkpoint({"model": build_model(cfg).state_dict(), **({"config": dump_config(cfg)} if trained else {})},
                    path)
    caplog.set_level("WARNING")
    monkeypatch.setattr(logging.getLogger("segmentation"), "propagate", True)  # to caplog, whatever set it up
    build_inference_model(load_config(evaluated, [*SMALL, "TEST.MODEL_FILE", path]))
    assert ("changes how the network outputs are read" in caplog.text) == warns, caplog.text
    if warns:
        assert "focal-centers" in caplog.text and "Evaluate with the training run's config.yaml" in caplog.text
