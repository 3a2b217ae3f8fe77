import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.data.datasets import render_scene
from segmentation.data.transforms import encode_panoptic
from segmentation.evaluation import PanopticEvaluator, id2rgb, rgb2id, to_coco_panoptic

V = META.void_label


def test_hand_made_pq():
    # gt: stuff 0 (4 px), thing 4001 (4 px), thing 4002 (2 px), crowd 5000 (2 px), void (2 px)
    gt = np.array([[0, 0, 4001, 4001, 4002, 4002, 5000],
                   [0, 0, 4001, 4001, V, V, 5000]])
    # pred: stuff exact; 4001 predicted with one extra px (IoU 4/5 -> match); 4002 missed (FN);
    # an extra crate lying in the crowd region (ignored), an extra ball in void (ignored)
    pred = np.array([[0, 0, 4001, 4001, 4001, 1000, 5001],
                     [0, 0, 4001, 4001, 4009, 4009, 5001]])
    ev = PanopticEvaluator(META)
    ev.update(pred, gt)
    # pred 1000 (stuff class 1, 1 px) is an FP of class 1; 4001 absorbs one px of 4002
    assert ev.tp.tolist() == [1, 0, 0, 0, 1, 0, 0]
    assert ev.fn.tolist() == [0, 0, 0, 0, 1, 0, 0]
    assert ev.fp.tolist() == [0, 1, 0, 0, 0, 0, 0]
    r = ev.evaluate()
    pq_ball = 0.8 / 1.5
    assert r["PQ_th"] == pytest.approx(100 * pq_ball)
    assert r["PQ_st"] == pytest.approx(100 * (1.0 + 0.0) / 2)
    assert r["PQ"] == pytest.approx(100 * (pq_ball + 1.0) / 3)
    assert r["SQ"] == pytest.approx(100 * (0.8 + 1.0 + 0.0) / 3)  # SQ is 0 for a class without TP


def test_id_rgb_round_trip():
    ids = np.array([[0, 1, 255, 256, 70000]])
    assert rgb2id(id2rgb(ids)).tolist() == ids.tolist()


def _scenes(n=4, seed=0):
    """Ground truth and degraded predictions on synthetic scenes, in the train-id encoding."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        _, pan, segs = render_scene(rng, 64, 96, max_objects=8, crowd_prob=0.7)
        gt = encode_panoptic(pan, segs, META).numpy()
        pred = gt.copy()
        pred = np.roll(pred, shift=i + 1, axis=1)  # shifted segments: some match, some do not
        pred[:4] = V  # a void band
        pred[pred % 1000 == 0] = pred[pred % 1000 == 0] // 1000 * 1000  # keep crowd as class region
        pred[(pred // 1000 == 5) & (pred % 1000 == 0)] = 5001  # crowd predicted as an instance
        out.append((gt, pred))
    return out


def test_matches_cityscapesscripts_eval_panoptic(tmp_path):
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic
    ev = PanopticEvaluator(META)
    gt_anns, pr_anns = [], []
    for folder in ("gt", "pred"):
        os.makedirs(tmp_path / folder)
    for i, (gt, pred) in enumerate(_scenes()):
        ev.update(pred, gt)
        for folder, pan, anns in (("gt", gt, gt_anns), ("pred", pred, pr_anns)):
            ids, segs = to_coco_panoptic(pan, META)
            Image.fromarray(id2rgb(ids)).save(tmp_path / folder / f"{i}.png")
            anns.append({"image_id": str(i), "file_name": f"{i}.png", "segments_info": segs})
    cats = [{"id": c, "name": n, "isthing": int(c in META.thing_ids)} for c, n in enumerate(META.class_names)]
    for name, anns in (("gt", gt_anns), ("pred", pr_anns)):
        with open(tmp_path / f"{name}.json", "w") as f:
            json.dump({"annotations": anns, "categories": cats}, f)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = evaluatePanoptic(str(tmp_path / "gt.json"), str(tmp_path / "gt"), str(tmp_path / "pred.json"),
                               str(tmp_path / "pred"), str(tmp_path / "result.json"))
    ours = ev.evaluate()
    for ours_key, (group, key) in {"PQ": ("All", "pq"), "SQ": ("All", "sq"), "RQ": ("All", "rq"),
                                   "PQ_th": ("Things", "pq"), "SQ_th": ("Things", "sq"), "RQ_th": ("Things", "rq"),
                                   "PQ_st": ("Stuff", "pq"), "SQ_st": ("Stuff", "sq"),
                                   "RQ_st": ("Stuff", "rq")}.items():
        assert ours[ours_key] / 100 == pytest.approx(ref[group][key], abs=1e-6), ours_key
    assert 0 < ours["PQ"] < 100


def test_matches_torchmetrics_without_crowd():
    """torchmetrics has no crowd regions and also ignores false negatives lying mostly in *predicted* void (a rule
    panopticapi does not have), so the comparison uses ground truth without crowd and predictions without void."""
    from torchmetrics.detection import PanopticQuality
    metric = PanopticQuality(things=set(META.thing_ids), stuffs=set(META.stuff_ids), allow_unknown_preds_category=True)
    ev = PanopticEvaluator(META)
    for gt, pred in _scenes(seed=3):
        gt = gt.copy()
        gt[(gt // 1000 < 255) & np.isin(gt // 1000, META.thing_ids) & (gt % 1000 == 0)] = V  # no crowd here
        pred = np.where(pred == V, 0, pred)  # no predicted void
        ev.update(pred, gt)

        def pair(p):
            cls, ins = p // 1000, p % 1000
            return torch.as_tensor(np.stack([cls, ins], -1))[None]
        metric.update(pair(pred), pair(gt))
    assert ev.evaluate()["PQ"] / 100 == pytest.approx(metric.compute().item(), abs=1e-6)


def test_invalid_prediction_ids_are_reported():
    ev = PanopticEvaluator(META)
    with pytest.raises(ValueError, match="outside"):
        ev.update(np.array([[9000]]), np.array([[0]]))
