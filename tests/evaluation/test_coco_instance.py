import contextlib
import io

import numpy as np
import pytest
import torch

from segmentation.config import load_config
from segmentation.data import build_dataset, build_test_loader
from segmentation.engine import Trainer, evaluate
from segmentation.evaluation.coco_instance import CocoInstanceEvaluator, instance_predictions
from segmentation.model import build_model
from tests.conftest import ROOT
from tests.fixtures.fake_datasets import write_coco


@pytest.fixture
def coco(tmp_path):
    write_coco(str(tmp_path), "val2017", n=4)
    cfg = load_config(f"{ROOT}/configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml", [
        "DATASET.DATASET", "coco_panoptic", "DATASET.ROOT", str(tmp_path), "DATASET.TRAIN_SPLIT", "val",
        "DATASET.TEST_SPLIT", "val", "MODEL.DECODER.DECODER_CHANNELS", "32", "POST_PROCESSING.STUFF_AREA", "0"],
        freeze=False)
    return cfg, tmp_path / "annotations" / "instances_val2017.json"


def test_scores_of_each_type():
    from segmentation.data.datasets import SYNTHETIC_METADATA as META
    pan = torch.full((4, 4), 0, dtype=torch.long)
    pan[1:3, 1:3] = 4001
    prob = torch.zeros(7, 4, 4)
    prob[4] = 0.5
    prob[4, 1, 1] = 0.9
    center = torch.zeros(4, 4)
    center[2, 2] = 0.8  # the mask's centre of mass (1.5, 1.5) truncates to (1, 1): 0 there
    center[1, 1] = 0.6
    (cls, mask, s), = instance_predictions(pan, prob, center, META, "semantic")
    assert cls == 4 and mask.sum() == 4 and s == pytest.approx(0.6)
    assert instance_predictions(pan, prob, center, META, "instance")[0][2] == pytest.approx(0.6)
    assert instance_predictions(pan, prob, center, META, "both")[0][2] == pytest.approx(0.36)
    with pytest.raises(ValueError, match="semantic, instance, both"):
        instance_predictions(pan, prob, center, META, "area")


def _predictions_from_ground_truth(ds, drop_every=0):
    out = []
    for i in range(len(ds)):
        s = ds[i]
        pan = s["panoptic"]
        ids = [p for p in torch.unique(pan).tolist() if p % 256 and p // 256 in ds.metadata.thing_ids]
        instances = [(p // 256, (pan == p).numpy(), 1.0 - 0.01 * k) for k, p in enumerate(ids)
                     if not (drop_every and k % drop_every == 0)]
        out.append((int(s["file_name"]), instances))
    return out


def test_ground_truth_scores_100_and_matches_pycocotools(coco):
    cfg, instances_json = coco
    ds = build_dataset(cfg, "val", is_train=False)
    ev = CocoInstanceEvaluator(str(instances_json), ds.metadata)
    for image_id, instances in _predictions_from_ground_truth(ds):
        ev.update(image_id, instances)
    assert ev.evaluate()["AP"] == pytest.approx(100.0)
    # a degraded prediction, cross-checked with pycocotools called directly on independently built detections
    from pycocotools import mask as mask_util
    from pycocotools.cocoeval import COCOeval
    ev = CocoInstanceEvaluator(str(instances_json), ds.metadata)
    detections = []
    for image_id, instances in _predictions_from_ground_truth(ds, drop_every=3):
        ev.update(image_id, instances)
        for cls, mask, score in instances:
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            detections.append({"image_id": image_id, "category_id": ds.metadata.eval_ids[cls], "segmentation": rle,
                               "score": score})
    ours = ev.evaluate()
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCOeval(ev.coco, ev.coco.loadRes(detections), iouType="segm")
        ref.evaluate()
        ref.accumulate()
        ref.summarize()
    assert 0 < ours["AP"] < 100
    assert ours["AP"] / 100 == pytest.approx(ref.stats[0], abs=1e-4)
    assert ours["AP50"] / 100 == pytest.approx(ref.stats[1], abs=1e-4)


def test_evaluation_loop_reports_mask_ap_with_oracles(coco):
    cfg, _ = coco
    cfg.OM.NAME, cfg.OM.MIXINS = "panoptic-deeplab", ("oracle-semantics", "oracle-centers", "oracle-offsets")
    cfg.DATASET.PAN_ONLY = True
    cfg.TEST.EVAL_INSTANCE = True
    cfg.DATASET.NUM_CLASSES = 7
    model = build_model(cfg)  # an all-oracle formulation has nothing to train: no Trainer
    metrics = evaluate(cfg, model, build_test_loader(cfg), build_dataset(cfg, "val", False).metadata,
                       torch.device("cpu"))
    # oracle outputs: only centres closer than the NMS window merge, so AP is high but not always 100
    assert metrics["AP"] > 60 and metrics["AP50"] >= metrics["AP"] and metrics["PQ"] > 80


def test_eval_instance_on_a_dataset_without_instances_json(synthetic_cfg):
    synthetic_cfg.TEST.EVAL_INSTANCE = True
    trainer = Trainer(synthetic_cfg)
    from segmentation.data.datasets import SYNTHETIC_METADATA
    with pytest.raises(NotImplementedError, match="coco_panoptic"):
        evaluate(synthetic_cfg, trainer.model, build_test_loader(synthetic_cfg), SYNTHETIC_METADATA, trainer.device)
