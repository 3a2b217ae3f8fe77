"""Predictions written in the official formats, read back by the official evaluators (cityscapesscripts' pixel-level,
panoptic and instance-level evaluations) on a dataset written in the Cityscapes format: the project's metrics must
equal theirs."""
import contextlib
import glob
import io
import json
import os
import tempfile

import numpy as np
import pytest
from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as module
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as pixel_level
from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic
from PIL import Image

from segmentation.config import load_config
from segmentation.data import build_test_loader, get_metadata
from segmentation.data.datasets.cityscapes import CITYSCAPES_METADATA as META
from segmentation.engine import Trainer, evaluate
from segmentation.evaluation import CityscapesInstanceEvaluator
from segmentation.evaluation.cityscapes_instance import official_instance_module
from tests.conftest import ROOT
from tests.fixtures.fake_datasets import write_cityscapes, write_coco


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A 3-image Cityscapes val split evaluated with ground-truth semantics and centres and untrained offsets (so
    instances are imperfect), TEST.SAVE_PREDICTIONS and TEST.EVAL_INSTANCE on."""
    root = tmp_path_factory.mktemp("cityscapes")
    write_cityscapes(str(root), "val", n=3, size=(64, 128))
    out = root / "out"
    return root, out, _evaluate("cityscapes_panoptic", root, 19, out)


def _evaluate(dataset, root, num_classes, out):
    """Metrics of the val split with ground-truth semantics and centres and untrained offsets, writing the
    predictions (TEST.SAVE_PREDICTIONS) and evaluating instance AP into ``out``."""
    cfg = load_config(f"{ROOT}/configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml", [
        "DATASET.DATASET", dataset, "DATASET.ROOT", str(root), "DATASET.NUM_CLASSES", str(num_classes),
        "DATASET.TRAIN_SPLIT", "val", "DATASET.TEST_SPLIT", "val", "DATASET.PAN_ONLY", "True",
        "OM.NAME", "panoptic-deeplab", "OM.MIXINS", "('oracle-semantics', 'oracle-centers')",
        "MODEL.DECODER.DECODER_CHANNELS", "32", "POST_PROCESSING.STUFF_AREA", "0", "OUTPUT_DIR", str(out),
        "TEST.SAVE_PREDICTIONS", "True", "TEST.EVAL_INSTANCE", "True"], freeze=False)
    trainer = Trainer(cfg)
    return evaluate(cfg, trainer.model, build_test_loader(cfg), get_metadata(cfg), trainer.device,
                    output_dir=str(out))


def test_semantic_pngs_match_evalPixelLevelSemanticLabeling(evaluated):
    root, out, metrics = evaluated
    preds = sorted(glob.glob(str(out / "semantic" / "*.png")))
    gts = [glob.glob(str(root / "gtFine" / "val" / "*" / f"{os.path.basename(p)[:-4]}_gtFine_labelIds.png"))[0]
           for p in preds]
    assert len(preds) == 3 and np.isin(np.unique(np.array(Image.open(preds[0]))), [7, 11, 21, 23, 24, 26, 27]).all()
    args = pixel_level.args
    args.evalPixelAccuracy, args.evalInstLevelScore, args.JSONOutput, args.quiet = False, False, False, True
    args.colorized, args.exportFile = False, str(out / "pixel.json")
    with contextlib.redirect_stdout(io.StringIO()):
        ref = pixel_level.evaluateImgLists(preds, gts, args)
    assert metrics["mIoU"] / 100 == pytest.approx(ref["averageScoreClasses"], abs=1e-6)
    for name, iou in metrics["IoU"].items():
        assert iou / 100 == pytest.approx(ref["classScores"][name], abs=1e-6), name


def test_panoptic_pngs_match_evalPanopticSemanticLabeling(evaluated):
    root, out, metrics = evaluated
    with contextlib.redirect_stdout(io.StringIO()):
        ref = evaluatePanoptic(str(root / "gtFine" / "cityscapes_panoptic_val.json"),
                               str(root / "gtFine" / "cityscapes_panoptic_val"), str(out / "panoptic.json"),
                               str(out / "panoptic"), str(out / "panoptic_result.json"))
    assert 0 < metrics["PQ_th"] < 100
    for ours, (group, key) in {"PQ": ("All", "pq"), "SQ": ("All", "sq"), "RQ": ("All", "rq"),
                               "PQ_th": ("Things", "pq"), "PQ_st": ("Stuff", "pq")}.items():
        assert metrics[ours] / 100 == pytest.approx(ref[group][key], abs=1e-6), ours
    categories = json.load(open(out / "panoptic.json"))["categories"]
    assert {c["id"] for c in categories} >= {7, 24, 26}  # Cityscapes label ids, not train ids


def test_instance_ap_is_the_official_one_on_the_written_files(evaluated):
    root, out, metrics = evaluated
    assert 0 < metrics["AP"] < 100 and metrics["AP50"] >= metrics["AP"]
    lines = [line.split() for txt in glob.glob(str(out / "instance" / "*_pred.txt")) for line in open(txt)]
    assert lines and {int(label) for _, label, _ in lines} <= {24, 25, 26, 27, 28, 31, 32, 33}
    assert all(os.path.isfile(out / "instance" / mask) for mask, _, _ in lines)


def _ground_truth_instances(gt_file, metadata):
    """(train id, mask, score 1) of every instance of a Cityscapes instanceIds PNG."""
    ids = np.array(Image.open(gt_file)).astype(np.int64)
    train = {label_id: t for t, label_id in enumerate(metadata.eval_ids)}
    return [(train[v // 1000], ids == v, 1.0) for v in np.unique(ids) if v >= 1000]


def test_ground_truth_as_prediction_scores_100_and_writes_nothing_elsewhere(tmp_path, monkeypatch):
    written = write_cityscapes(str(tmp_path / "cs"), "val", n=2, size=(64, 128), panoptic=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    installed = set(os.listdir(os.path.dirname(module.__file__)))
    saved_np = module.np
    temporary = set(glob.glob(os.path.join(tempfile.gettempdir(), "cityscapes_instances_*")))
    ev = CityscapesInstanceEvaluator(str(tmp_path / "cs" / "gtFine" / "val"), META)
    for image_id, _ in written:
        gt = glob.glob(str(tmp_path / "cs" / "gtFine" / "val" / "*" / f"{image_id}_gtFine_instanceIds.png"))[0]
        ev.update(image_id, _ground_truth_instances(gt, META))
    result = ev.evaluate()
    assert result["AP"] == pytest.approx(100) and result["AP50"] == pytest.approx(100)
    assert os.listdir(cwd) == [] and set(os.listdir(os.path.dirname(module.__file__))) == installed
    assert module.np is saved_np  # restored
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "cityscapes_instances_*"))) == temporary  # removed


def test_lower_confidence_for_the_true_instance_lowers_ap(tmp_path):
    """A false instance scored above a true one of its class lowers that class's AP below 100."""
    written = write_cityscapes(str(tmp_path / "cs"), "val", n=1, size=(64, 128), panoptic=False)
    image_id = written[0][0]
    gt_file = glob.glob(str(tmp_path / "cs" / "gtFine" / "val" / "*" / f"{image_id}_gtFine_instanceIds.png"))[0]
    instances = sorted(_ground_truth_instances(gt_file, META), key=lambda t: -t[1].sum())  # largest first
    assert instances[0][1].sum() >= 100  # Cityscapes ignores instances below 100 px
    scores = {}
    for order in ("true first", "false first"):
        ev = CityscapesInstanceEvaluator(str(tmp_path / "cs" / "gtFine" / "val"), META)
        cls, mask, _ = instances[0]
        false = np.array(Image.open(gt_file.replace("instanceIds", "labelIds"))) == 7  # the road: no instance, no void
        assert false.sum() >= 100 and not any((false & m).any() for _, m, _ in instances)
        true_score, false_score = (0.9, 0.5) if order == "true first" else (0.5, 0.9)
        ev.update(image_id, [(cls, mask, true_score), (cls, false, false_score)] + instances[1:])
        scores[order] = ev.evaluate()["AP_per_class"][META.class_names[cls]]["AP"]
    assert scores["true first"] == pytest.approx(100) and scores["false first"] < 100


def test_numpy_shim_is_scoped(tmp_path):
    with official_instance_module(str(tmp_path)) as mod:
        assert mod.np.in1d(np.array([[1, 2], [3, 4]]), [2, 3]).tolist() == [False, True, True, False]
        assert mod.np.zeros is np.zeros
    assert module.np is np


def test_coco_panoptic_predictions_match_the_panoptic_api_rules(tmp_path):
    """On a COCO-format dataset (non-contiguous category ids) the written PNG + JSON, read by the COCO panoptic
    evaluation (cityscapesscripts ships panopticapi's pq_compute), give our PQ; the mask-AP detections are written
    in COCO's results format."""
    write_coco(str(tmp_path), "val2017", n=4)
    out = tmp_path / "out"
    metrics = _evaluate("coco_panoptic", tmp_path, 7, out)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = evaluatePanoptic(str(tmp_path / "annotations" / "panoptic_val2017.json"),
                               str(tmp_path / "annotations" / "panoptic_val2017"), str(out / "panoptic.json"),
                               str(out / "panoptic"), str(out / "panoptic_result.json"))
    assert 0 < metrics["PQ"] < 100
    for ours, (group, key) in {"PQ": ("All", "pq"), "PQ_th": ("Things", "pq"), "PQ_st": ("Stuff", "pq")}.items():
        assert metrics[ours] / 100 == pytest.approx(ref[group][key], abs=1e-6), ours
    detections = json.load(open(out / "instance" / "coco_instances_results.json"))
    assert detections and {d["category_id"] for d in detections} <= {3, 7, 11}


def test_unlabelled_pixels_are_written_as_void(tmp_path):
    """The ignore label (e.g. TEST.ORACLE_SEMANTIC on void pixels) becomes evaluation id 0 (Cityscapes'
    'unlabeled'), or stays the ignore label for datasets without evaluation ids."""
    from segmentation.data.datasets import SYNTHETIC_METADATA
    from segmentation.evaluation.writers import PredictionWriter
    semantic = np.array([[0, 13, 255]])
    PredictionWriter(str(tmp_path / "cs"), META).write("a", semantic)
    assert np.asarray(Image.open(tmp_path / "cs" / "semantic" / "a.png")).tolist() == [[7, 26, 0]]
    PredictionWriter(str(tmp_path / "syn"), SYNTHETIC_METADATA).write("a", semantic[:, [0, 2]])
    assert np.asarray(Image.open(tmp_path / "syn" / "semantic" / "a.png")).tolist() == [[0, 255]]


def test_saving_predictions_of_the_semantic_oracle(synthetic_cfg, tmp_path):
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.TEST.SAVE_PREDICTIONS = synthetic_cfg.TEST.ORACLE_SEMANTIC = True
    trainer = Trainer(synthetic_cfg)
    metrics = evaluate(synthetic_cfg, trainer.model, build_test_loader(synthetic_cfg), get_metadata(synthetic_cfg),
                       trainer.device, output_dir=str(tmp_path))
    assert metrics["mIoU"] == pytest.approx(100)
    # the oracle mixin's logits are all 0 on void pixels (no truth there): they decode to class 0, which the
    # evaluation ignores; how the writer codes pixels without a class is tested above
    written = [np.asarray(Image.open(f)) for f in glob.glob(str(tmp_path / "semantic" / "*.png"))]
    assert len(written) == 3
