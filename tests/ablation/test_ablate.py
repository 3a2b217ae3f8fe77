"""tools/ablate.py end to end on tiny configs: submitit's local executor running runs in parallel, reruns that skip
what is done and resume what was interrupted (by a real SIGTERM to the process group), the report from the run
folders alone, an Optuna search with pruning, and the SLURM job parameters."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from segmentation.utils.runtime import available_cpus
from tests.conftest import ROOT

TINY = {"DATASET.SYNTHETIC.IMAGE_SIZE": [64, 96], "DATASET.CROP_SIZE": [64, 96], "DATASET.SYNTHETIC.TRAIN_SIZE": 8,
        "DATASET.SYNTHETIC.VAL_SIZE": 2, "TRAIN.IMS_PER_BATCH": 2, "TRAIN.MAX_ITER": 4, "TEST.EVAL_PERIOD": 2,
        "PRINT_FREQ": 1, "MODEL.DECODER.DECODER_CHANNELS": 32, "DATALOADER.NUM_WORKERS": 0,
        "MODEL.PANOPTIC_DEEPLAB.INSTANCE.DECODER_CHANNELS": 16, "MODEL.PANOPTIC_DEEPLAB.INSTANCE.ASPP_CHANNELS": 32,
        "MODEL.PANOPTIC_DEEPLAB.INSTANCE.HEAD_CHANNELS": 16}
BASE = f"{ROOT}/configs/synthetic/om_panoptic_deeplab_mbv2_synthetic.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _grid(tmp_path, **data):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, "opts": TINY, **data}))
    return str(path)


def _ablate(*args, timeout=600, env=ENV):
    return subprocess.run([sys.executable, f"{ROOT}/tools/ablate.py", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


@pytest.mark.slow
def test_local_executor_runs_the_grid_skips_it_on_a_rerun_and_reports(tmp_path):
    grid = _grid(tmp_path, seeds=2, variants={"base": {}, "huber": {"OM.MIXINS": ["huber-offsets"]}})
    out = tmp_path / "out"
    without_omp = {k: v for k, v in ENV.items() if k != "OMP_NUM_THREADS"}  # the jobs' threads: ablate's choice
    r = _ablate("--grid", grid, "--out", str(out), "--jobs", "2", env=without_omp)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 runs (2 variants x 2 seeds): 0 done, 4 to run on 'local' (2 at once)" in r.stdout
    for variant in ("base", "huber"):
        for seed in (0, 1):
            result = json.loads((out / variant / f"seed{seed}" / "result.json").read_text())
            assert result["status"] == "finished" and result["iteration"] == 4 and "PQ" in result["metrics"]
            cfg = yaml.safe_load((out / variant / f"seed{seed}" / "config.yaml").read_text())
            assert cfg["SEED"] == seed and cfg["OM"]["MIXINS"] == (["huber-offsets"] if variant == "huber" else [])
            assert cfg["NUM_THREADS"] == max(1, available_cpus() // 2)  # the CPUs shared by 2 jobs, no workers
    assert len(os.listdir(out / "submitit")) >= 4  # the jobs ran through submitit
    report = (out / "report.md").read_text()
    assert "| base | (reference config) | 2 |" in report and "| huber | `OM.MIXINS ('huber-offsets',)` | 2 |" in report
    assert "[graph](report/graphs/huber.svg)" in report
    for name in ("metric.png", "train_loss.png", "val.png"):
        assert (out / "report" / name).stat().st_size > 1000
    with open(out / "report" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["seed"], r["status"]) for r in rows] == [
        ("base", "0", "finished"), ("base", "1", "finished"), ("huber", "0", "finished"), ("huber", "1", "finished")]
    stamp = (out / "base" / "seed0" / "result.json").stat().st_mtime
    r = _ablate("--grid", grid, "--out", str(out), "--jobs", "2")
    assert r.returncode == 0 and "4 done, 0 to run" in r.stdout
    assert (out / "base" / "seed0" / "result.json").stat().st_mtime == stamp
    # the report from the run folders alone
    os.remove(out / "ablation.yaml")
    r = _ablate("--report", str(out), "--report-out", str(tmp_path / "docs" / "abl.md"))
    assert r.returncode == 0, r.stderr
    again = (tmp_path / "docs" / "abl.md").read_text()
    assert "| huber | `OM.MIXINS ('huber-offsets',)` | 2 |" in again
    assert (tmp_path / "docs" / "abl" / "val.png").exists()


@pytest.mark.slow
def test_a_sigterm_to_the_process_group_then_a_rerun_resumes_the_run(tmp_path):
    grid = _grid(tmp_path, opts={**TINY, "TRAIN.MAX_ITER": 60, "TEST.EVAL_PERIOD": 0, "CKPT_FREQ": 1000,
                                 "DATALOADER.NUM_WORKERS": 1})
    out = tmp_path / "out"
    args = [sys.executable, f"{ROOT}/tools/ablate.py", "--grid", grid, "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    log = out / "base" / "seed0" / "log.txt"
    deadline = time.time() + 300
    while not (log.exists() and "iter 3/60" in log.read_text()):
        assert time.time() < deadline and proc.poll() is None, "the run did not start"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # what timeout, SLURM preemption and Kubernetes do
    proc.wait(timeout=60)
    record = out / "base" / "seed0" / "run.json"
    while json.loads(record.read_text())["status"] != "interrupted":
        assert time.time() < deadline, json.loads(record.read_text())
        time.sleep(0.2)
    stopped = json.loads(record.read_text())["iteration"]
    assert 3 <= stopped < 60 and not (out / "base" / "seed0" / "result.json").exists()
    r = _ablate("--grid", grid, "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 done, 1 to run" in r.stdout
    assert f"at iteration {stopped}" in log.read_text().split("Resumed from")[1].splitlines()[0]
    assert json.loads((out / "base" / "seed0" / "result.json").read_text())["iteration"] == 60


@pytest.mark.slow
def test_optuna_search_runs_trials_and_a_rerun_continues_the_study(tmp_path):
    import optuna
    grid = _grid(tmp_path, search={"OM.MIXINS": {"choices": [[], ["huber-offsets"]]},
                                   "LOSS.OFFSET.WEIGHT": {"low": 0.005, "high": 0.02, "log": True}})
    out = tmp_path / "search"
    out.mkdir()
    # a trial left running by a stopped search (asked, parameters drawn, never told): the rerun resumes it
    from segmentation.ablation.search import open_storage, suggest
    from segmentation.ablation.spec import load_spec
    stale = optuna.create_study(study_name="search", storage=open_storage(f"sqlite:///{out}/optuna.db"),
                                direction="maximize").ask()
    drawn = suggest(stale, load_spec(grid).search)
    r = _ablate("--grid", grid, "--out", str(out), "--search", "optuna", "--trials", "3", "--jobs", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 of 3 trials ended, 1 to resume" in r.stdout
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out}/optuna.db")
    assert len(study.trials) == 3 and all(t.state.is_finished() for t in study.trials)
    resumed = yaml.safe_load((out / "trial_0000" / "config.yaml").read_text())
    assert resumed["LOSS"]["OFFSET"]["WEIGHT"] == pytest.approx(drawn["LOSS.OFFSET.WEIGHT"])
    for t in study.trials:
        cfg = yaml.safe_load((out / f"trial_{t.number:04d}" / "config.yaml").read_text())
        assert cfg["LOSS"]["OFFSET"]["WEIGHT"] == pytest.approx(t.params["LOSS.OFFSET.WEIGHT"])
        if t.state == optuna.trial.TrialState.COMPLETE:
            result = json.loads((out / f"trial_{t.number:04d}" / "result.json").read_text())
            assert t.value == result["metrics"]["PQ"] and t.intermediate_values.keys() <= {2}
    assert "## Optuna search: 3 trials" in (out / "report.md").read_text()
    r = _ablate("--grid", grid, "--out", str(out), "--search", "optuna", "--trials", "4")
    assert r.returncode == 0 and "3 of 4 trials ended" in r.stdout
    assert len(optuna.load_study(study_name="search", storage=f"sqlite:///{out}/optuna.db").trials) == 4


def test_the_pruner_stops_a_run_after_an_evaluation(synthetic_cfg, tmp_path):
    """A real study whose pruner prunes everything below PQ 101: the run stops after its first evaluation, says
    'pruned' in run.json, and the trial holds the reported value."""
    import optuna

    from segmentation.ablation.search import OptunaReporter, open_storage
    from segmentation.engine import Trainer
    from segmentation.engine.hooks import EarlyStop
    url = f"sqlite:///{tmp_path}/study.db"
    pruner = optuna.pruners.ThresholdPruner(lower=101.0)
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize", pruner=pruner)
    trial = study.ask()
    synthetic_cfg.OUTPUT_DIR, synthetic_cfg.TEST.EVAL_PERIOD = str(tmp_path), 1
    synthetic_cfg.DEBUG.TENSORBOARD = False
    trainer = Trainer(synthetic_cfg)
    trainer.hooks.append(OptunaReporter({"storage": url, "study": "s", "trial_id": trial._trial_id,
                                         "pruner": pruner}, "PQ"))
    with pytest.raises(EarlyStop, match="Pruned by Optuna at iteration 1"):
        trainer.train()
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "pruned" and record["iteration"] == 1
    assert not (tmp_path / "final_state.pth").exists()
    stored = optuna.load_study(study_name="s", storage=url).trials[0]
    assert list(stored.intermediate_values) == [1]


def test_slurm_jobs_get_partition_gpus_and_time(tmp_path, monkeypatch):
    """The sbatch script submitit would submit (a stand-in ``srun`` on PATH: no cluster here)."""
    import submitit.slurm.slurm as slurm

    from segmentation.ablation.jobs import ExecutorOptions, make_executor
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    import ablate
    options = ExecutorOptions(cluster="slurm", jobs=3, partition="gpu", gpus_per_job=2, cpus_per_task=8,
                              time_min=90, extra=ablate.slurm_extra(["account=lab"]))  # --slurm-param account=lab
    executor = make_executor(options, str(tmp_path / "jobs"))
    script = slurm._make_sbatch_string(command="python -m submitit.core._submit x", folder=str(tmp_path),
                                       **executor._executor.parameters)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2",
                 "#SBATCH --time=90", "#SBATCH --cpus-per-task=8", "#SBATCH --account=lab", "#SBATCH --nodes=1"):
        assert line in script, script


@pytest.mark.slow
def test_a_job_of_two_tasks_is_one_distributed_run(tmp_path):
    """submitit's local executor starts two tasks; they form one gloo run through TorchDistributedEnvironment."""
    grid = _grid(tmp_path)
    out = tmp_path / "out"
    r = _ablate("--grid", grid, "--out", str(out), "--tasks-per-job", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    run = out / "base" / "seed0"
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    assert "2 process(es)" in (run / "log.txt").read_text()
    assert json.loads((run / "result.json").read_text())["iteration"] == 4
