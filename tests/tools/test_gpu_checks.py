"""tools/gpu_checks.py, the script a session lent a GPU runs, runs here on the CPU at tiny sizes, so that it works the
day a GPU is there (its numbers on CUDA are recorded in docs/benchmarks.md, never asserted)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_every_gpu_check_runs_on_the_cpu_at_tiny_sizes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "tools/gpu_checks.py", "--out", str(tmp_path), "--device", "cpu",
                        "--quick", "--budget", "900"], cwd=ROOT, capture_output=True, text=True, timeout=1000,
                       env=env)
    record = json.loads((tmp_path / "gpu_checks.json").read_text())
    assert r.returncode == 0, json.dumps(record, indent=1)[-4000:] + r.stderr[-2000:]
    checks = record["checks"]
    assert set(checks) == {"om", "amp", "nccl", "resume", "table1", "om_compiled"}
    assert all(c["ok"] for c in checks.values())
    om = checks["om"]
    assert om["targets_syncs"] == [] and all(om["targets_equal_cpu"].values()) and om["decoding_equal_cpu"]
    assert checks["amp"]["float32"]["losses"] and checks["amp"]["amp"]["losses"]  # bfloat16 on the CPU
    # torchrun with one process joins the process group (gloo here, NCCL on CUDA)
    assert checks["nccl"]["backend"] == "gloo" and checks["nccl"]["iterations"] == 4
    resume = checks["resume"]  # deterministic on the CPU: resuming at iteration 3 gives iterations 4-6 exactly
    assert resume["verdict"] == "exact" and resume["compared_iterations"] == [4, 5, 6]
    assert "(iv)" in checks["table1"]["eager"]["table"] and (tmp_path / "table1_compiled.json").exists()
    compiled = checks["om_compiled"]
    assert all(compiled[part]["equal_eager"] and compiled[part]["compiled_ms"] > 0 for part in ("targets", "decoding"))
