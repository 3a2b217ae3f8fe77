import numpy as np
import pytest

from segmentation.evaluation import SemanticEvaluator


def test_confusion_matrix_metrics():
    ev = SemanticEvaluator(3, ignore_label=255)
    gt = np.array([0, 0, 1, 1, 2, 255])
    pred = np.array([0, 1, 1, 1, 0, 2])
    ev.update(pred, gt)
    assert ev.conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    r = ev.evaluate()
    iou = [1 / 3, 2 / 3, 0.0]
    assert r["mIoU"] == pytest.approx(100 * np.mean(iou))
    assert r["pACC"] == pytest.approx(100 * 3 / 5)
    assert r["mACC"] == pytest.approx(100 * np.mean([0.5, 1.0, 0.0]))
    assert r["fwIoU"] == pytest.approx(100 * (0.4 / 3 + 0.4 * 2 / 3))


def test_matches_cityscapesscripts_pixel_level(tmp_path):
    """Per-class IoU equals cityscapesscripts' evalPixelLevelSemanticLabeling on label-id PNGs."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev_mod
    from cityscapesscripts.helpers.labels import trainId2label
    from PIL import Image
    rng = np.random.default_rng(0)
    ev = SemanticEvaluator(19, ignore_label=255)
    preds, gts = [], []
    for i in range(3):
        gt = rng.integers(0, 19, (16, 24))
        gt[:2] = 255
        pred = np.where(rng.random((16, 24)) < 0.7, gt, rng.integers(0, 19, (16, 24))).clip(0, 18)
        ev.update(pred, gt)
        to_id = np.vectorize(lambda t: trainId2label[t].id if t != 255 else 0)
        for name, arr, lst in (("gt", gt, gts), ("pred", pred, preds)):
            path = str(tmp_path / f"{name}{i}.png")
            Image.fromarray(to_id(arr).astype(np.uint8)).save(path)
            lst.append(path)
    args = ev_mod.args
    args.evalPixelAccuracy, args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, False, True
    args.colorized, args.exportFile = False, str(tmp_path / "res.json")
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        res = ev_mod.evaluateImgLists(preds, gts, args)
    ours = ev.evaluate()["IoU"]
    for train_id in range(19):
        name = trainId2label[train_id].name
        ref = res["classScores"][name]
        if np.isnan(ref):
            assert str(train_id) not in ours
        else:
            assert ours[str(train_id)] / 100 == pytest.approx(ref, abs=1e-6), name
