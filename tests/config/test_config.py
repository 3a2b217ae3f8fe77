import glob
import os

import pytest

from segmentation.config import ConfigError, get_default_config, load_config
from tests.conftest import ROOT

# every config file (configs/ablations/ holds grid files of tools/ablate.py, checked in tests/ablation/)
CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
                 if os.sep + "ablations" + os.sep not in p)


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


@pytest.mark.parametrize("opts, message", [
    (["TRAIN.MAX_ITER", "many"], "Config key 'TRAIN.MAX_ITER' (in command-line overrides) takes an integer "
                                 "(default 90000), got 'many' (a string)."),
    (["TRAIN.MAX_ITER", "1.5"], "takes an integer (default 90000), got 1.5 (a number)."),
    (["TRAIN.RESUME", "1"], "takes True or False (default False), got 1 (an integer)."),
    (["DATASET.CROP_SIZE", "[64, 64"], "takes a tuple (default (513, 1025)), got '[64, 64' (a string)."),
    (["DATASET.CROP_SIZE", "{64, 32}"], "takes a tuple (default (513, 1025)), got {64, 32} (set)."),
    (["TRAIN", "3"], "Config key 'TRAIN' (in command-line overrides) is a group of keys; set its keys (e.g. "
                     "TRAIN.IMS_PER_BATCH), not '3'."),
])
def test_a_value_of_the_wrong_type_names_what_the_key_takes(opts, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, opts)
    assert message in str(info.value)


def test_integers_where_numbers_are_expected_and_lists_for_tuples(tmp_path):
    """``SOLVER.WEIGHT_DECAY 0`` or ``BASE_LR: 1`` mean the float (yacs refused them); YAML lists become the tuples
    of the defaults; strings stay strings; command line and files type values alike."""
    opts = ["SOLVER.WEIGHT_DECAY", "0", "SOLVER.BASE_LR", "1", "DATASET.CROP_SIZE", "[64, 32]", "OUTPUT_DIR", "./a/b",
            "MODEL.WEIGHTS", ""]
    cfg = load_config(None, opts)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("SOLVER:\n  WEIGHT_DECAY: 0\n  BASE_LR: 1\nDATASET:\n  CROP_SIZE: [64, 32]\n"
                         "OUTPUT_DIR: ./a/b\nMODEL:\n  WEIGHTS: ''\n")
    for c in (cfg, load_config(str(yaml_file))):
        assert c.SOLVER.WEIGHT_DECAY == 0.0 and type(c.SOLVER.WEIGHT_DECAY) is float
        assert c.SOLVER.BASE_LR == 1.0 and type(c.SOLVER.BASE_LR) is float
        assert c.DATASET.CROP_SIZE == (64, 32) and c.OUTPUT_DIR == "./a/b" and c.MODEL.WEIGHTS == ""
    frozen = load_config(None)
    from segmentation.config import merge_opts
    with pytest.raises(AttributeError, match="immutable"):
        merge_opts(frozen, ["SOLVER.BASE_LR", "0.5"])


def test_om_base_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="OM.NAME"):
        cfg = load_config(None, ["OM.BASE", "panoptic-deeplab"])
    assert cfg.OM.NAME == "panoptic-deeplab"


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_every_shipped_config_loads_and_builds_its_model(path, tmp_path):
    from segmentation.model import build_model
    opts = ["MODEL.BACKBONE.PRETRAINED", "False", "MODEL.BACKBONE.WEIGHTS", ""]
    if "coco" in path and "om" in os.path.basename(path):  # the OM reads COCO's categories from its JSON file
        from tests.fixtures.fake_datasets import write_coco
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


def test_a_resolved_config_of_version_1_keeps_its_numerics(tmp_path, caplog):
    """Version 1 files (every config.yaml a run wrote before version 2) behaved as ALIGN_CORNERS and
    PAD_TO_CROP_SIZE False: the upgrade keeps that unless the file sets them; a file without VERSION is current."""
    from segmentation.config import CONFIG_VERSION
    old = tmp_path / "old.yaml"
    old.write_text("VERSION: 1\nTRAIN:\n  MAX_ITER: 3\n")
    caplog.set_level("INFO")
    cfg = load_config(str(old))
    assert (cfg.MODEL.ALIGN_CORNERS, cfg.TEST.PAD_TO_CROP_SIZE, cfg.VERSION) == (False, False, CONFIG_VERSION)
    assert "is of version 1: upgraded to version 2" in caplog.text
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("VERSION: 1\nMODEL:\n  ALIGN_CORNERS: True\n")
    assert load_config(str(explicit)).MODEL.ALIGN_CORNERS and not load_config(str(explicit)).TEST.PAD_TO_CROP_SIZE
    current = tmp_path / "current.yaml"
    current.write_text("TRAIN:\n  MAX_ITER: 3\n")
    assert load_config(str(current)).MODEL.ALIGN_CORNERS
    newer = tmp_path / "newer.yaml"
    newer.write_text(f"VERSION: {CONFIG_VERSION + 1}\n")
    with pytest.raises(ConfigError, match="newer repository"):
        load_config(str(newer))


def test_a_resolved_config_loads_back_as_it_is(tmp_path):
    from segmentation.config import dump_config
    cfg = load_config(os.path.join(ROOT, "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml"))
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_config(cfg))
    assert load_config(str(saved)) == cfg


def test_keys_kept_for_compatibility_warn_when_set(tmp_path, caplog):
    from segmentation.config.defaults import COMPATIBILITY_KEYS
    original = tmp_path / "original.yaml"
    original.write_text("GPUS: (0, 1, 2, 3)\nWORKERS: 1\nDEBUG:\n  KEEP_INTERVAL: 10\n")
    caplog.set_level("WARNING")
    load_config(str(original))
    for key in ("GPUS", "WORKERS", "DEBUG.KEEP_INTERVAL"):
        assert f"{key} is kept for compatibility" in caplog.text
        assert COMPATIBILITY_KEYS[key] in caplog.text
    caplog.clear()
    load_config(os.path.join(ROOT, "configs/cityscapes/panoptic_deeplab_R50_os32_cityscapes.yaml"))
    assert "kept for compatibility" not in caplog.text  # the shipped configs set none


def test_every_default_key_is_read_or_listed_for_compatibility():
    """Nothing in the config is silently ignored: each key is read somewhere in the package or the tools, or is in
    COMPATIBILITY_KEYS (which the loader warns about)."""
    import re

    from yacs.config import CfgNode

    from segmentation.config.defaults import COMPATIBILITY_KEYS

    def flat(node, prefix=""):
        for k, v in node.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, CfgNode) else [prefix + k]

    files = glob.glob(os.path.join(ROOT, "segmentation", "**", "*.py"), recursive=True)
    files += glob.glob(os.path.join(ROOT, "tools", "*.py"))
    code = "".join(open(f).read() for f in files if not f.endswith("defaults.py"))
    unread = []
    for key in flat(get_default_config()):
        parent, _, leaf = key.rpartition(".")
        # read as <parent>.<leaf> (cfg.X.Y, t.Y with t = cfg.X) or by name (getattr(cfg.TEST, "ORACLE_..."))
        pattern = rf"(\.|\b[a-z]\.){leaf}\b|\"{leaf}\"|'{leaf}'|\"{key}\""
        if not re.search(pattern, code) and key not in COMPATIBILITY_KEYS:
            unread.append(key)
    assert unread == []


def test_cudnn_keys_set_the_backends():
    import torch

    from segmentation.utils.runtime import configure_backends
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.enabled)
    try:
        configure_backends(load_config(None, ["CUDNN.BENCHMARK", "False", "CUDNN.DETERMINISTIC", "True"]))
        assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == (False, True)
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.enabled = before
