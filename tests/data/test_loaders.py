"""The loaders' process handling: a process holding a loader iterator with workers still exits."""
import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

HOLD_AN_ITERATOR_AND_EXIT = textwrap.dedent("""
    import sys
    from segmentation.config import load_config
    from segmentation.data import build_train_loader
    cfg = load_config(sys.argv[1], ["DATASET.SYNTHETIC.IMAGE_SIZE", "(32, 48)", "DATASET.CROP_SIZE", "(32, 48)",
                                    "TRAIN.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "2",
                                    "OUTPUT_DIR", sys.argv[2]])
    kept = [iter(build_train_loader(cfg))]
    next(kept[0])
    kept.append(kept)  # a reference cycle, as a traceback makes: the iterator is alive at interpreter exit
    print("exiting", flush=True)
""")


def test_a_process_holding_a_loader_iterator_with_workers_exits(tmp_path):
    """The workers ignore SIGTERM (the main process handles group signals); multiprocessing ends daemonic children
    with SIGTERM at exit and joins them, which hung the interpreter (and CI) forever before the exit hook."""
    cfg = os.path.join(ROOT, "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml")
    r = subprocess.run([sys.executable, "-c", HOLD_AN_ITERATOR_AND_EXIT, cfg, str(tmp_path)], cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "exiting", r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr[-3000:]
