"""TEST.EVAL_PERIOD: evaluation during training, best.pth, run.json's record of the best, and training left exactly
as it would be without the evaluations."""
import json
import os

import pytest
import torch

from segmentation.engine import Trainer
from segmentation.engine.trainer import TrainingInterrupted, read_run_record
from tests.engine.test_training_features import StopAfter


class StopAfterTwo(StopAfter):
    stop = 2


def _configure(cfg, out, period):
    cfg.OUTPUT_DIR, cfg.TEST.EVAL_PERIOD, cfg.TRAIN.MAX_ITER, cfg.PRINT_FREQ = str(out), period, 4, 1
    cfg.DATASET.SYNTHETIC.VAL_SIZE = 2


def test_evaluations_keep_the_best_and_leave_training_unchanged(synthetic_cfg, tmp_path):
    _configure(synthetic_cfg, tmp_path / "plain", 0)
    plain = Trainer(synthetic_cfg)
    plain.train()
    _configure(synthetic_cfg, tmp_path / "evaluated", 2)
    evaluated = Trainer(synthetic_cfg)
    evaluated.train()
    assert evaluated.history == plain.history  # bit-identical losses: the evaluations drew no random number
    runs = sorted(os.listdir(tmp_path / "evaluated" / "eval" / "training"))
    assert runs == ["iter_0000002", "iter_0000004"]
    scores = {int(r[5:]): json.load(open(tmp_path / "evaluated" / "eval" / "training" / r / "metrics.json"))["PQ"]
              for r in runs}
    best = read_run_record(str(tmp_path / "evaluated"))["best"]
    assert best["metric"] == "PQ" and best["value"] == max(scores.values())
    assert best["iteration"] == max(scores, key=lambda it: (scores[it], -it))  # the first of equal scores
    saved = torch.load(tmp_path / "evaluated" / "best.pth", weights_only=True)
    assert saved["iteration"] == best["iteration"] and saved["metrics"]["PQ"] == best["value"]


def test_a_resumed_run_keeps_the_best_so_far(synthetic_cfg, tmp_path):
    _configure(synthetic_cfg, tmp_path, 1)
    with pytest.raises(TrainingInterrupted):
        StopAfterTwo(synthetic_cfg).train()
    before = read_run_record(str(tmp_path))["best"]
    assert before["iteration"] in (1, 2)
    synthetic_cfg.TRAIN.RESUME = True
    trainer = Trainer(synthetic_cfg)
    trainer.train()
    after = read_run_record(str(tmp_path))["best"]
    assert after["value"] >= before["value"]
    if after["iteration"] <= 2:  # not beaten after the resume: the record from before the interruption stands
        assert after == before


def test_an_unknown_best_metric_lists_the_metrics(synthetic_cfg, tmp_path):
    _configure(synthetic_cfg, tmp_path, 2)
    synthetic_cfg.TEST.BEST_METRIC = "pq"
    with pytest.raises(KeyError, match="TEST.BEST_METRIC 'pq'.*PQ"):
        Trainer(synthetic_cfg).train()
