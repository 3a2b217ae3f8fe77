"""Instance AP with several processes: each process sees a shard of the images, the main process gathers every
prediction and runs the official evaluation, every process gets the metrics of one process seeing them all (a real
two-process gloo group); a failure of the official evaluation reaches every process instead of leaving them
waiting."""
import glob
import os

import pytest

from segmentation.data import build_dataset
from segmentation.data.datasets.cityscapes import CITYSCAPES_METADATA
from segmentation.evaluation.build import INSTANCE_EVALUATOR_REGISTRY
from segmentation.evaluation.instance import InstanceEvaluator
from tests.evaluation.test_coco_instance import _predictions_from_ground_truth
from tests.evaluation.test_official_formats import _ground_truth_instances
from tests.fixtures.distributed import free_port, in_two_processes
from tests.fixtures.fake_datasets import write_cityscapes, write_coco


def _evaluate_shard(rank, kind, ground_truth, metadata, predictions):
    evaluator = INSTANCE_EVALUATOR_REGISTRY.get(kind)(ground_truth, metadata)
    for image_id, instances in predictions[rank::2]:
        evaluator.update(image_id, instances)
    evaluator.synchronize()
    return evaluator.evaluate()


def _coco(tmp_path):
    from segmentation.config import load_config
    from tests.conftest import ROOT
    write_coco(str(tmp_path), "val2017", n=4)
    cfg = load_config(f"{ROOT}/configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml", [
        "DATASET.DATASET", "coco_panoptic", "DATASET.ROOT", str(tmp_path), "DATASET.TRAIN_SPLIT", "val",
        "DATASET.TEST_SPLIT", "val"])
    ds = build_dataset(cfg, "val", is_train=False)
    return str(tmp_path / "annotations" / "instances_val2017.json"), ds.metadata, \
        _predictions_from_ground_truth(ds, drop_every=3)


def _cityscapes(tmp_path):
    written = write_cityscapes(str(tmp_path / "cs"), "val", n=4, size=(64, 128), panoptic=False)
    gt_dir = tmp_path / "cs" / "gtFine" / "val"
    predictions = []
    for image_id, _ in written:
        gt = glob.glob(str(gt_dir / "*" / f"{image_id}_gtFine_instanceIds.png"))[0]
        predictions.append((image_id, _ground_truth_instances(gt, CITYSCAPES_METADATA)[1:]))  # one instance missed
    return str(gt_dir), CITYSCAPES_METADATA, predictions


@pytest.mark.parametrize("kind", ["coco", "cityscapes"])
def test_two_processes_report_the_ap_of_all_images(tmp_path, kind):
    ground_truth, metadata, predictions = {"coco": _coco, "cityscapes": _cityscapes}[kind](tmp_path)
    alone = INSTANCE_EVALUATOR_REGISTRY.get(kind)(ground_truth, metadata)
    for image_id, instances in predictions:
        alone.update(image_id, instances)
    expected = alone.evaluate()
    assert 0 < expected["AP"] < 100  # the shards matter: each alone would score differently
    assert in_two_processes(_evaluate_shard, kind, ground_truth, metadata, predictions) == {0: expected,
                                                                                           1: expected}


class _Failing(InstanceEvaluator):
    def __init__(self):
        self.predictions = []

    def update(self, image_id, instances):
        self.predictions.append(image_id)

    def official_metrics(self):
        raise FileNotFoundError(f"no ground truth for {sorted(self.predictions)}")


def _fail(rank):
    evaluator = _Failing()
    evaluator.update(f"image{rank}", [])
    evaluator.synchronize()
    try:
        evaluator.evaluate()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def test_a_failing_official_evaluation_raises_in_every_process():
    assert in_two_processes(_fail) == {
        0: "FileNotFoundError: no ground truth for ['image0', 'image1']",
        1: "RuntimeError: The instance evaluation failed on the main process: FileNotFoundError: no ground truth for "
           "['image0', 'image1']"}


@pytest.mark.slow
def test_test_net_under_torchrun_reports_the_instance_ap_of_one_process(tmp_path):
    """tools/test_net.py with TEST.EVAL_INSTANCE on a COCO-format dataset, one process and two under torchrun:
    the same AP, AP50 and PQ (all-oracle decoding, so that the instances are real and the weights do not matter)."""
    import json
    import subprocess
    import sys

    import torch

    from segmentation.config import load_config
    from segmentation.model import build_model
    from tests.conftest import ROOT
    write_coco(str(tmp_path / "coco"), "val2017", n=6)
    opts = ["DATASET.DATASET", "coco_panoptic", "DATASET.ROOT", str(tmp_path / "coco"), "DATASET.TRAIN_SPLIT", "val",
            "DATASET.TEST_SPLIT", "val", "DATASET.NUM_CLASSES", "7", "DATASET.PAN_ONLY", "True",
            "MODEL.DECODER.DECODER_CHANNELS", "32", "POST_PROCESSING.STUFF_AREA", "0", "TEST.EVAL_INSTANCE", "True",
            "OM.NAME", "panoptic-deeplab", "OM.MIXINS", "('oracle-semantics', 'oracle-centers', 'oracle-offsets')",
            "DATALOADER.NUM_WORKERS", "0", "TEST.NUM_VIS", "0"]
    cfg_file = f"{ROOT}/configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml"
    weights = tmp_path / "weights.pth"
    torch.save({"model": build_model(load_config(cfg_file, opts)).state_dict()}, weights)
    metrics = {}
    for nproc in (1, 2):
        out = tmp_path / f"p{nproc}"
        launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                                          str(free_port())]
        r = subprocess.run([sys.executable, *launcher, "tools/test_net.py", "--cfg", cfg_file, *opts, "OUTPUT_DIR",
                            str(out), "TEST.MODEL_FILE", str(weights)], cwd=ROOT, capture_output=True, text=True,
                           timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        (path,) = glob.glob(str(out / "eval" / "*" / "metrics.json"))
        metrics[nproc] = json.load(open(path))
    assert 0 < metrics[1]["AP"] <= 100
    for key in ("AP", "AP50", "PQ"):
        assert metrics[2][key] == pytest.approx(metrics[1][key], abs=1e-9), key
