"""final_metrics, the evaluation an ablation job reports: every process of a distributed job takes the same branch
(the evaluation is collective), whatever each process sees of the metrics file."""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from segmentation.ablation import jobs
from tests.fixtures.distributed import in_two_processes

MAX_ITER = 4


def _cfg(folder):
    return SimpleNamespace(OUTPUT_DIR=str(folder), TRAIN=SimpleNamespace(MAX_ITER=MAX_ITER))


def _write_metrics(folder, metrics):
    path = os.path.join(folder, "eval", "training", f"iter_{MAX_ITER:07d}", "metrics.json")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump(metrics, f)


class _Evaluator:
    """Stands for PeriodicEvaluator: counts the evaluations made and leaves their metrics on the trainer."""
    calls = 0

    def __init__(self, cfg):
        pass

    def evaluate(self, trainer):
        type(self).calls += 1
        trainer.latest_evaluation = (trainer.done, {"PQ": np.float64(7.0), "per_class": {"sky": 1.0}})


@pytest.fixture
def evaluator(monkeypatch):
    import segmentation.engine.hooks as hooks
    _Evaluator.calls = 0
    monkeypatch.setattr(hooks, "PeriodicEvaluator", _Evaluator)
    return _Evaluator


def test_the_runs_own_evaluation_is_used_without_reading_the_file(tmp_path, evaluator):
    # the main process writes the file after the evaluation's last collective: another process may not see it yet
    trainer = SimpleNamespace(latest_evaluation=(MAX_ITER, {"PQ": np.float32(12.5), "per_class": {"sky": 3.0}}))
    assert jobs.final_metrics(_cfg(tmp_path), trainer) == {"PQ": 12.5}
    assert evaluator.calls == 0


def test_a_finished_run_resumed_reads_the_previous_attempts_evaluation(tmp_path, evaluator):
    _write_metrics(tmp_path, {"PQ": 41.0, "mIoU": 60.5, "per_class": {}})
    trainer = SimpleNamespace(latest_evaluation=None)
    assert jobs.final_metrics(_cfg(tmp_path), trainer) == {"PQ": 41.0, "mIoU": 60.5}
    assert evaluator.calls == 0


@pytest.mark.parametrize("latest", [None, (MAX_ITER - 2, {"PQ": 1.0})])
def test_without_an_evaluation_at_the_last_iteration_one_is_made(tmp_path, evaluator, latest):
    trainer = SimpleNamespace(latest_evaluation=latest, done=MAX_ITER - 1, max_iter=MAX_ITER - 1)
    assert jobs.final_metrics(_cfg(tmp_path), trainer) == {"PQ": 7.0}
    assert evaluator.calls == 1 and trainer.done == MAX_ITER


def _final_metrics_of_rank(rank, folders):
    import segmentation.engine.hooks as hooks
    hooks.PeriodicEvaluator = _Evaluator
    trainer = SimpleNamespace(latest_evaluation=None, done=MAX_ITER, max_iter=MAX_ITER)
    return jobs.final_metrics(_cfg(folders[rank]), trainer), _Evaluator.calls


def test_processes_follow_the_main_process_view_of_the_file(tmp_path):
    """Rank 0 sees the previous attempt's metrics, rank 1 (another node's stale view) does not: neither evaluates
    (alone, rank 1 would wait forever in the evaluation's all-reduce) and both report rank 0's metrics."""
    seen, unseen = tmp_path / "seen", tmp_path / "unseen"
    _write_metrics(seen, {"PQ": 33.0})
    os.makedirs(unseen)
    assert in_two_processes(_final_metrics_of_rank, [str(seen), str(unseen)]) == {0: ({"PQ": 33.0}, 0),
                                                                                 1: ({"PQ": 33.0}, 0)}
