import json
import os

import pytest
import torch

from segmentation.data import build_test_loader
from segmentation.data.datasets import SYNTHETIC_METADATA
from segmentation.engine import Trainer, evaluate
from segmentation.engine.trainer import CHECKPOINT_NAME, FINAL_NAME
from segmentation.model import build_model
from segmentation.model.output_math import compose
from segmentation.model.output_math.wrapper import OutputMathModel


def test_short_training_writes_run_files_and_resumes(synthetic_cfg, tmp_path):
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.CKPT_FREQ = 2
    Trainer(synthetic_cfg).train()
    for name in ("config.yaml", "run.json", CHECKPOINT_NAME, FINAL_NAME):
        assert os.path.isfile(tmp_path / name), name
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["iteration"] == 4 and {"model", "optimizer", "scheduler"} <= set(state)
    final = torch.load(tmp_path / FINAL_NAME, weights_only=True)  # the weights and the config they were trained with
    assert set(final) == {"model", "config"} and final["config"] == state["config"]
    synthetic_cfg.TRAIN.RESUME = True
    synthetic_cfg.TRAIN.MAX_ITER = 6
    trainer = Trainer(synthetic_cfg)
    assert trainer.start_iter == 4
    assert trainer.scheduler.last_epoch == 4
    trainer.train()
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["iteration"] == 6


def test_evaluation_writes_metrics_and_panels(synthetic_cfg, tmp_path):
    synthetic_cfg.TEST.NUM_VIS = 2
    trainer = Trainer(synthetic_cfg)
    metrics = evaluate(synthetic_cfg, trainer.model, build_test_loader(synthetic_cfg), SYNTHETIC_METADATA,
                       trainer.device, output_dir=str(tmp_path))
    saved = json.load(open(tmp_path / "metrics.json"))
    for key in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "mIoU"):
        assert key in saved and saved[key] == pytest.approx(metrics[key])
    assert len(os.listdir(tmp_path / "vis")) == 2


@pytest.mark.parametrize("path", ["conventional", "om"])
def test_oracles_score_near_the_ceiling(synthetic_cfg, path):
    """Ground-truth semantics, centres and offsets decode to PQ >= 95 (TEST.ORACLE_* on the conventional path, the
    three oracle mixins on the OM path with its release policy): decoding and evaluation agree."""
    if path == "om":
        synthetic_cfg.OM.NAME = "panoptic-deeplab"
        synthetic_cfg.OM.MIXINS = ("oracle-semantics", "oracle-centers", "oracle-offsets")
        synthetic_cfg.DATASET.PAN_ONLY = True
    else:
        synthetic_cfg.TEST.ORACLE_SEMANTIC = synthetic_cfg.TEST.ORACLE_CENTER = True
        synthetic_cfg.TEST.ORACLE_OFFSET = True
    synthetic_cfg.DATASET.SYNTHETIC.VAL_SIZE = 10
    synthetic_cfg.DATASET.SYNTHETIC.IMAGE_SIZE = (128, 256)
    synthetic_cfg.POST_PROCESSING.STUFF_AREA = 0
    model = build_model(synthetic_cfg)  # an all-oracle formulation has nothing to train: no Trainer
    metrics = evaluate(synthetic_cfg, model, build_test_loader(synthetic_cfg), SYNTHETIC_METADATA,
                       torch.device("cpu"))
    assert metrics["PQ"] >= 95 and metrics["mIoU"] == pytest.approx(100)


@pytest.mark.parametrize("om", [False, True])
def test_the_deprecated_test_oracle_keys_are_the_oracle_mixins(synthetic_cfg, om):
    """TEST.ORACLE_CENTER adds the 'oracle-centers' mixin to the decoding (with a deprecation message naming it), on
    the conventional and the OM path alike: both give the metrics of OM.MIXINS ('oracle-centers',)."""
    if om:
        synthetic_cfg.OM.NAME, synthetic_cfg.DATASET.PAN_ONLY = "panoptic-deeplab", True
    synthetic_cfg.TEST.MAX_IMAGES = 2
    trainer = Trainer(synthetic_cfg)
    loader = build_test_loader(synthetic_cfg)
    synthetic_cfg.TEST.ORACLE_CENTER = True
    with pytest.warns(DeprecationWarning, match=r"OM.MIXINS \('oracle-centers',\)"):
        deprecated = evaluate(synthetic_cfg, trainer.model, loader, SYNTHETIC_METADATA, trainer.device)
    synthetic_cfg.TEST.ORACLE_CENTER = False
    synthetic_cfg.OM.NAME, synthetic_cfg.OM.MIXINS = "panoptic-deeplab", ("oracle-centers",)
    om_model = OutputMathModel(trainer.model.net if om else trainer.model, compose("panoptic-deeplab",
                               ("oracle-centers",)), synthetic_cfg, SYNTHETIC_METADATA)
    mixin = evaluate(synthetic_cfg, om_model, loader, SYNTHETIC_METADATA, trainer.device)
    assert {k: v for k, v in deprecated.items() if not k.startswith("time")} == {
        k: v for k, v in mixin.items() if not k.startswith("time")}


def test_om_training_matches_the_conventional_losses(synthetic_cfg, tmp_path):
    """Same seed and config: the OM path with PAN_ONLY logs the same losses as the conventional path."""
    logs = {}
    for om in (False, True):
        synthetic_cfg.OUTPUT_DIR = str(tmp_path / str(om))
        synthetic_cfg.OM.NAME = "panoptic-deeplab" if om else ""
        synthetic_cfg.DATASET.PAN_ONLY = om
        trainer = Trainer(synthetic_cfg)
        trainer.train()
        logs[om] = trainer.history[-1][1]
    assert logs[True] == logs[False]  # bit-identical


def test_non_finite_loss_stops_with_the_component_name(synthetic_cfg, tmp_path):
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.SOLVER.BASE_LR = 1e30
    synthetic_cfg.SOLVER.OPTIMIZER = "sgd"
    synthetic_cfg.TRAIN.MAX_ITER = 6
    with pytest.raises(FloatingPointError, match="loss 'semantic_loss'|parameters|gradients"):
        Trainer(synthetic_cfg).train()
    assert not os.path.isfile(tmp_path / FINAL_NAME)  # a failed run leaves no final state


def test_evaluation_logs_a_progress_bar_with_timings_and_eta(synthetic_cfg):
    import logging
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("segmentation")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        trainer = Trainer(synthetic_cfg)
        evaluate(synthetic_cfg, trainer.model, build_test_loader(synthetic_cfg), SYNTHETIC_METADATA, trainer.device)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    bars = [r for r in records if r.startswith("eval [")]
    assert bars and bars[-1].startswith("eval [" + "#" * 20 + "] 3/3") and "post-processing" in bars[-1]
    assert "eta 0:00:00" in bars[-1] and any("PQ" in r for r in records)
