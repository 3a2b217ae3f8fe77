"""Run a tiny training in a subprocess with a fault injected (used by test_reliability.py).

    python tests/engine/_fault_run.py OUTPUT_DIR NAN_POSITION [KEY VALUE ...]

NAN_POSITION >= 0 puts one NaN pixel into the sample at that position of the training stream (the data loader's
batch); -1 injects nothing. The exit status is train_net's.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))

import _common
import train_net

from segmentation.data.datasets.base import PanopticDataset

if __name__ == "__main__":
    output_dir, position = sys.argv[1], int(sys.argv[2])
    original = PanopticDataset.__getitem__

    def poisoned(self, item):
        out = original(self, item)
        if isinstance(item, tuple) and item[1] == position:
            out["image"][0, 0, 0] = float("nan")
        return out
    PanopticDataset.__getitem__ = poisoned
    cfg = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "synthetic",
                       "panoptic_deeplab_mbv2_synthetic.yaml")
    sys.exit(_common.run(train_net.main, ["--cfg", cfg, "OUTPUT_DIR", output_dir, *sys.argv[3:]]))
