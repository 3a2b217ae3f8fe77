import subprocess
import sys

import pytest

from tests.conftest import ROOT

CFG = "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml"


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_misspelt_key_exits_with_the_closest_keys():
    r = _run("tools/train_net.py", "--cfg", CFG, "SOLVER.BASE_RL", "0.1")
    assert r.returncode == 2 and "SOLVER.BASE_LR" in r.stderr


def test_unknown_backbone_lists_valid_names(tmp_path):
    r = _run("tools/train_net.py", "--config-file", CFG, "MODEL.BACKBONE.NAME", "resnet51", "OUTPUT_DIR", str(tmp_path))
    assert r.returncode != 0 and "resnet50" in r.stderr and "MODEL.BACKBONE.NAME" in r.stderr


def test_impossible_output_stride_is_explained(tmp_path):
    r = _run("tools/train_net.py", "--cfg", CFG, "MODEL.BACKBONE.DILATION", "(True, False, False)",
             "OUTPUT_DIR", str(tmp_path))
    assert r.returncode != 0 and "Valid values" in r.stderr


def test_missing_checkpoint_is_explained(tmp_path):
    r = _run("tools/test_net.py", "--cfg", CFG, "OUTPUT_DIR", str(tmp_path))
    assert r.returncode != 0 and "does not exist" in r.stderr


@pytest.mark.slow
def test_main_job_reaches_pq_50(tmp_path):
    """The README's main job: train the synthetic config from scratch on CPU, evaluate, check the outputs."""
    import json
    import os
    out = str(tmp_path / "run")
    r = _run("tools/train_net.py", "--cfg", CFG, "OUTPUT_DIR", out, timeout=1800)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "eta" in r.stdout
    r = _run("tools/test_net.py", "--cfg", CFG, "OUTPUT_DIR", out)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    print({k: round(metrics[k], 2) for k in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "mIoU")})
    assert metrics["PQ"] >= 50
    assert os.path.isfile(os.path.join(out, "config.yaml"))
    assert len(os.listdir(os.path.join(out, "vis"))) >= 1


def test_decoding_benchmark_runs_and_reports_identical_maps():
    r = _run("tools/benchmark_decoding.py", "--height", "96", "--width", "192", "--objects", "8", "--repeat", "1")
    assert r.returncode == 0, r.stderr
    assert "total" in r.stdout and r.stdout.count("identical") == 2 and "False" not in r.stdout
