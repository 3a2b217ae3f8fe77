import glob
import os
import re
import shutil
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
    assert "Per class (percent):" in r.stdout and "| ball" in r.stdout  # the per-class table is printed
    (evaluation,) = glob.glob(os.path.join(out, "eval", "val-final_state-*"))  # its own folder
    assert f"written to {evaluation}" in r.stdout
    metrics = json.load(open(os.path.join(evaluation, "metrics.json")))
    print({k: round(metrics[k], 2) for k in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st", "mIoU")})
    assert metrics["PQ"] >= 50
    assert os.path.isfile(os.path.join(out, "config.yaml")) and os.path.isfile(os.path.join(evaluation, "config.yaml"))
    assert len(os.listdir(os.path.join(evaluation, "vis"))) >= 1
    assert not os.path.exists(os.path.join(out, "metrics.json"))  # the training run's folder is left alone


def test_decoding_benchmark_runs_and_reports_identical_maps():
    r = _run("tools/benchmark_decoding.py", "--height", "96", "--width", "192", "--objects", "8", "--repeat", "1")
    assert r.returncode == 0, r.stderr
    assert "total" in r.stdout and r.stdout.count("identical") == 2 and "False" not in r.stdout


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="inductor needs a C++ compiler on CPU")
def test_om_benchmark_runs_and_its_compiled_targets_are_identical():
    """tools/benchmark_om.py --quick --compile: every section runs; inductor's targets equal the eager ones."""
    r = _run("tools/benchmark_om.py", "--quick", "--compile", "--repeat", "1", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "identical targets: True" in r.stdout and "identical panoptic maps" in r.stdout and "5. " in r.stdout


@pytest.mark.parametrize("opts, message", [
    (["TRAIN.MAX_ITER", "0"], "TRAIN.MAX_ITER must be at least 1, got 0"),
    (["TRAIN.MAX_ITER", "-3"], "TRAIN.MAX_ITER must be at least 1, got -3"),
    (["DATASET.CROP_SIZE", "(64,)"], "DATASET.CROP_SIZE must be two positive integers"),
    (["DATASET.CROP_SIZE", "(0, 0)"], "DATASET.CROP_SIZE must be two positive integers"),
    (["TEST.CROP_SIZE", "(1025,)"], "TEST.CROP_SIZE must be two positive integers"),
    (["DATASET.STD", "(0.0, 0.0, 0.0)"], "DATASET.STD 3 positive values"),
    (["DIST_TIMEOUT", "0"], "DIST_TIMEOUT (minutes) must be positive"),
    (["OM.MIXINS", "('learnable-centers',)"], "OM.NAME is empty"),
    (["OM.NAME", "panoptic-deeplab", "OM.MIXINS", "('cpu-tensors',)", "DATASET.PAN_ONLY", "True"],
     "set DATASET.PAN_ONLY False"),
])
def test_values_that_used_to_fail_late_are_config_errors(opts, message):
    from segmentation.config import ConfigError, load_config
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(os.path.join(ROOT, CFG), opts)


def test_a_config_error_is_one_line_on_stderr(tmp_path):
    r = _run("tools/train_net.py", "--cfg", CFG, "TRAIN.MAX_ITER", "0", "OUTPUT_DIR", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip() == "error: TRAIN.MAX_ITER must be at least 1, got 0."


def test_a_python_yaml_tag_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("_BASE_: " + os.path.join(ROOT, CFG) + "\nSEED: !!python/object/apply:os.system ['true']\n")
    r = _run("tools/train_net.py", "--cfg", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "is not valid plain YAML" in r.stderr and "line 2" in r.stderr


def test_a_model_build_error_is_one_line_and_the_details_go_to_the_log(tmp_path):
    r = _run("tools/train_net.py", "--cfg", CFG, "MODEL.BACKBONE.NAME", "resnet51", "OUTPUT_DIR", str(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "resnet50" in lines[0] and "log.txt" in lines[-1]
    assert "POST_PROCESSING" not in r.stdout  # the console gets a summary, not the ~240-line config
    log = (tmp_path / "log.txt").read_text()
    assert "Traceback" in log and "POST_PROCESSING:" in log
    r = _run("tools/train_net.py", "--cfg", CFG, "--debug", "MODEL.BACKBONE.NAME", "resnet51",
             "OUTPUT_DIR", str(tmp_path))
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_the_resolved_config_is_plain_yaml_that_loads_back(synthetic_cfg, tmp_path):
    from segmentation.config import load_config
    from segmentation.engine.trainer import save_run_record
    save_run_record(synthetic_cfg, str(tmp_path))
    text = (tmp_path / "config.yaml").read_text()
    assert "&id" not in text and "*id" not in text and "!!" not in text
    assert load_config(str(tmp_path / "config.yaml"), freeze=False) == synthetic_cfg


def test_the_all_oracle_config_refuses_to_train_at_start(tmp_path):
    r = _run("tools/train_net.py", "--cfg", "configs/synthetic/om_oracles.yaml", "OUTPUT_DIR", str(tmp_path))
    assert r.returncode == 1 and r.stderr.startswith("error: Nothing to train") and "test_net.py" in r.stderr
    assert not (tmp_path / "checkpoint.pth.tar").exists()


def _tiny_checkpoint(tmp_path, poison=False):
    import torch

    from segmentation.config import load_config
    from segmentation.model import build_model
    cfg = load_config(os.path.join(ROOT, CFG), TINY)
    state = build_model(cfg).state_dict()
    if poison:
        next(v for k, v in state.items() if k.endswith("running_mean"))[0] = float("nan")
    path = tmp_path / "model.pth"
    torch.save({"model": state}, path)
    return str(path)


TINY = ["DATASET.SYNTHETIC.IMAGE_SIZE", "(64, 96)", "DATASET.CROP_SIZE", "(64, 96)", "DATASET.SYNTHETIC.VAL_SIZE",
        "2", "MODEL.DECODER.DECODER_CHANNELS", "32", "DATALOADER.NUM_WORKERS", "0"]


def test_evaluation_refuses_non_finite_weights(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path, poison=True)
    r = _run("tools/test_net.py", "--cfg", CFG, *TINY, "OUTPUT_DIR", str(tmp_path), "TEST.MODEL_FILE", ckpt)
    assert r.returncode == 1 and "NaN or infinite values" in r.stderr and "running_mean" in r.stderr


def test_evaluating_an_unfinished_run_says_so(tmp_path):
    import json
    out = tmp_path / "run"
    out.mkdir()
    ckpt = _tiny_checkpoint(out)
    (out / "run.json").write_text(json.dumps({"status": "interrupted", "iteration": 3, "max_iter": 400,
                                              "reason": "SIGTERM received"}))
    r = _run("tools/test_net.py", "--cfg", CFG, *TINY, "OUTPUT_DIR", str(out))
    assert r.returncode == 1
    assert "the run in" in r.stderr and "is interrupted at iteration 3 of 400" in r.stderr
    assert "TRAIN.RESUME" in r.stderr
    r = _run("tools/test_net.py", "--cfg", CFG, *TINY, "OUTPUT_DIR", str(out), "TEST.MODEL_FILE", ckpt)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "comes from a run that did not finish (interrupted at iteration 3 of 400" in r.stdout


def test_initial_weights_without_a_common_key_are_an_error(tmp_path):
    import torch
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(3, 3)}}, path)
    r = _run("tools/train_net.py", "--cfg", CFG, *TINY, "OUTPUT_DIR", str(tmp_path), "MODEL.WEIGHTS", str(path))
    assert r.returncode == 1 and "initialises only 0% of the model's values" in r.stderr


def test_partial_initial_weights_are_reported_grouped_by_module(tmp_path, caplog):
    import logging

    import torch

    from segmentation.config import load_config
    from segmentation.model import build_model
    from segmentation.utils.checkpoint import load_model_weights
    cfg = load_config(os.path.join(ROOT, CFG), TINY)
    model = build_model(cfg)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("decoder.instance_head")}
    state["decoder.semantic_head.classifier.semantic.weight"] = torch.zeros(19, 32, 1, 1)  # 19 classes, not 7
    state["extra.layer.weight"] = torch.zeros(1)
    logger = logging.getLogger("segmentation")
    logger.addHandler(caplog.handler)
    try:
        load_model_weights(model, state, "ckpt.pth", strict=False)
    finally:
        logger.removeHandler(caplog.handler)
    text = caplog.text
    assert "shape differs  decoder.semantic_head.classifier.semantic.weight: checkpoint (19, 32, 1, 1)" in text
    assert re.search(r"missing\s+decoder\.instance_head: \d+ tensor\(s\)", text)
    assert re.search(r"unexpected\s+extra\.layer: 1 tensor\(s\)", text)
    with pytest.raises(ValueError, match="does not fit the configured model"):
        load_model_weights(model, state, "ckpt.pth", strict=True)


@pytest.mark.parametrize("config", sorted(os.listdir(os.path.join(ROOT, "configs/synthetic"))))
def test_every_shipped_synthetic_config_trains_or_refuses_at_start(config, tmp_path):
    from segmentation.config import load_config
    from segmentation.engine import Trainer
    cfg = load_config(os.path.join(ROOT, "configs/synthetic", config), [
        *TINY, "DATASET.SYNTHETIC.TRAIN_SIZE", "2", "TRAIN.IMS_PER_BATCH", "2", "TRAIN.MAX_ITER", "1",
        "DEBUG.TENSORBOARD", "False", "OUTPUT_DIR", str(tmp_path)])
    try:
        trainer = Trainer(cfg)
    except ValueError as e:
        assert "Nothing to train" in str(e) and config == "om_oracles.yaml"
        return
    trainer.train()
    assert (tmp_path / "final_state.pth").exists()


def test_the_tool_runner_turns_errors_into_exit_statuses(capsys):
    import _common

    def interrupted(argv):
        raise KeyboardInterrupt

    def wrong_input(argv):
        raise FileNotFoundError("Checkpoint 'x.pth' does not exist; train first or set TEST.MODEL_FILE.")

    def bug(argv):
        return [][1]
    assert _common.run(interrupted) == 130 and capsys.readouterr().err == "interrupted\n"
    assert _common.run(wrong_input) == 1
    assert capsys.readouterr().err.startswith("error: Checkpoint 'x.pth' does not exist")
    assert _common.run(bug) == 1
    assert capsys.readouterr().err.startswith("error: internal error (IndexError: list index out of range)")
    assert _common.run(lambda argv: 0) == 0


def test_a_cuda_device_assert_names_the_check_it_may_be(capsys):
    """On CUDA torch drops torch._assert_async's message: the error line names OM.MAX_INSTANCES and the way to
    find the kernel."""
    import _common

    def device_assert(argv):
        raise RuntimeError("CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously "
                           "reported at some other API call, so the stacktrace below might be incorrect.")
    assert _common.run(device_assert) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: CUDA error: device-side assert triggered; a check inside a CUDA kernel failed")
    assert "OM.MAX_INSTANCES" in err and "CUDA_LAUNCH_BLOCKING=1" in err and "asynchronously" not in err
