import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the package is installed (requirements.txt: -e .); the tools are scripts, which the tests also import
sys.path.insert(0, os.path.join(ROOT, "tools"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests that train a model (minutes); run in CI")


@pytest.fixture
def synthetic_cfg():
    """A tiny, fast variant of the synthetic config (unfrozen)."""
    from segmentation.config import load_config
    return load_config(os.path.join(ROOT, "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml"), [
        "DATASET.SYNTHETIC.IMAGE_SIZE", "(64, 96)", "DATASET.CROP_SIZE", "(64, 96)", "DATASET.SYNTHETIC.TRAIN_SIZE",
        "8", "DATASET.SYNTHETIC.VAL_SIZE", "3", "TRAIN.IMS_PER_BATCH", "2", "TRAIN.MAX_ITER", "4",
        "DATALOADER.NUM_WORKERS", "0", "PRINT_FREQ", "2", "MODEL.DECODER.DECODER_CHANNELS", "32",
        "MODEL.PANOPTIC_DEEPLAB.INSTANCE.DECODER_CHANNELS", "16", "MODEL.PANOPTIC_DEEPLAB.INSTANCE.ASPP_CHANNELS",
        "32", "MODEL.PANOPTIC_DEEPLAB.INSTANCE.HEAD_CHANNELS", "16"], freeze=False)
