import glob
import os

import pytest

from segmentation.config import ConfigError, get_default_config, load_config
from tests.conftest import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True))


def test_every_default_key_has_a_comment():
    """Each key assignment in defaults.py carries a comment (on its line or the line above)."""
    lines = open(os.path.join(ROOT, "segmentation/config/defaults.py")).read().splitlines()
    missing = [ln.strip() for i, ln in enumerate(lines)
               if ln.strip().startswith("cfg.") and "=" in ln and "#" not in ln and "CN()" not in ln
               and not lines[i - 1].strip().startswith("#") and not ln.rstrip().endswith("(")]
    assert not missing, missing


def test_base_inheritance_and_override(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("SOLVER:\n  BASE_LR: 0.5\n  MOMENTUM: 0.8\nTRAIN:\n  MAX_ITER: 7\n")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.25\n")
    cfg = load_config(str(child), ["TRAIN.MAX_ITER", "9"])
    assert cfg.SOLVER.BASE_LR == 0.25 and cfg.SOLVER.MOMENTUM == 0.8 and cfg.TRAIN.MAX_ITER == 9
    assert cfg.is_frozen()


def test_misspelt_key_names_the_key_and_close_matches(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("SOLVER:\n  BASE_RL: 0.1\n")
    with pytest.raises(ConfigError, match=r"SOLVER\.BASE_RL.*SOLVER\.BASE_LR"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match=r"MODEL\.BACKBONE\.NAME"):
        load_config(None, ["MODEL.BACKBONE.NAMES", "resnet50"])


def test_missing_file_odd_overrides_and_type_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="pairs"):
        load_config(None, ["SOLVER.BASE_LR"])
    with pytest.raises(ConfigError):
        load_config(None, ["TRAIN.MAX_ITER", "'many'"])


def test_om_base_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="OM.NAME"):
        cfg = load_config(None, ["OM.BASE", "panoptic-deeplab"])
    assert cfg.OM.NAME == "panoptic-deeplab"


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_every_shipped_config_loads_and_builds_its_model(path, tmp_path):
    from segmentation.model import build_model
    opts = ["MODEL.BACKBONE.PRETRAINED", "False", "MODEL.BACKBONE.WEIGHTS", ""]
    if "coco" in path and "om" in os.path.basename(path):  # the OM reads COCO's categories from its JSON file
        from segmentation.data.datasets.export import write_coco
        write_coco(str(tmp_path), "train2017", n=1)
        opts += ["DATASET.ROOT", str(tmp_path), "DATASET.NUM_CLASSES", "7"]
    cfg = load_config(path, opts)
    build_model(cfg)


def test_defaults_match_the_original():
    cfg = get_default_config()
    assert cfg.LOSS.CENTER.WEIGHT == 200.0 and cfg.LOSS.OFFSET.WEIGHT == 0.01
    assert cfg.POST_PROCESSING.NMS_KERNEL == 7 and cfg.POST_PROCESSING.TOP_K_INSTANCE == 200
    assert cfg.DATASET.GAUSSIAN_SIGMA == 8 and tuple(cfg.DATASET.CROP_SIZE) == (513, 1025)
    # the original's numerics: corner-aligned upsampling, test images padded to TEST.CROP_SIZE
    assert cfg.MODEL.ALIGN_CORNERS and cfg.TEST.PAD_TO_CROP_SIZE and tuple(cfg.TEST.CROP_SIZE) == (1025, 2049)
