"""The 'huber-offsets' mixin, the worked example of docs/om/writing_a_formulation.md: its value, its precedence with
push-pull, a short training, and the guide's code blocks being the files that run."""
import os
import re

import pytest
import torch

from segmentation.config import get_default_config
from segmentation.data.datasets import SYNTHETIC_METADATA
from segmentation.model.output_math import OMCompositionError, compose
from tests.conftest import ROOT

GUIDE = os.path.join(ROOT, "docs", "om", "writing_a_formulation.md")


def test_huber_offsets_loss_on_a_hand_made_batch():
    """Two weighted pixels, errors (y, x) (1, 0) and (6, -2) px, beta 4: Huber 1/8, 0, 4, 1/2; the zero-weight
    pixel (error 10) does not count: (1/8 + 0 + 4 + 1/2) / 4 channel-pixels."""
    cfg = get_default_config()
    cfg.OM.HUBER_OFFSETS.BETA = 4.0
    om = compose("panoptic-deeplab", ("huber-offsets",))({}, config=cfg, metadata=SYNTHETIC_METADATA)
    om["offset_pred"] = torch.tensor([[[[1.0, 6.0, 10.0]], [[0.0, -2.0, 10.0]]]])
    om["offset_truth"] = torch.zeros(1, 2, 1, 3)
    om["offset_weights_truth"] = torch.tensor([[[1.0, 1.0, 0.0]]])
    assert om.offset_loss().item() == (1 / 8 + 0 + 4 + 1 / 2) / 4


def test_the_last_mixin_listed_wins():
    cfg = get_default_config()
    both = compose("panoptic-deeplab", ("huber-offsets", "push-pull"))({}, config=cfg, metadata=SYNTHETIC_METADATA)
    huber = compose("panoptic-deeplab", ("huber-offsets",))({}, config=cfg, metadata=SYNTHETIC_METADATA)
    for om in (both, huber):
        om["offset_pred"] = torch.tensor([[[[1.0, 6.0]], [[0.0, -2.0]]]])
        om["offset_truth"] = torch.zeros(1, 2, 1, 2)
        om["offset_weights_truth"] = torch.ones(1, 1, 2)
    both["push_pull_loss"] = torch.tensor(0.5)
    assert both.offset_loss().item() == huber.offset_loss().item() + cfg.OM.PUSH_PULL.WEIGHT * 0.5
    with pytest.raises(OMCompositionError, match="'huber-offsets' overrides offset_loss without reading them"):
        compose("panoptic-deeplab", ("push-pull", "huber-offsets"))


def test_the_example_config_trains(synthetic_cfg, tmp_path):
    from segmentation.engine import Trainer
    synthetic_cfg.OM.NAME, synthetic_cfg.OM.MIXINS = "panoptic-deeplab", ("huber-offsets",)
    synthetic_cfg.DATASET.PAN_ONLY, synthetic_cfg.OUTPUT_DIR = True, str(tmp_path)
    synthetic_cfg.TRAIN.MAX_ITER = 2
    trainer = Trainer(synthetic_cfg)
    assert trainer.model.om_class.__name__ == "PanopticDeepLab+HuberOffsets"
    trainer.train()
    assert all(torch.isfinite(torch.tensor(v)) for _, h in trainer.history for v in h.values())


def _blocks(text):
    """(file, lines selector or None, code) of every fenced block of the guide that names a file."""
    pattern = r"```\w+ file=(\S+)(?: lines=(\S+))?\n(.*?)```"
    return re.findall(pattern, text, flags=re.S)


def _excerpt(source, selector):
    """The lines of ``source`` a block quotes: the ``def <selector>`` function, or the lines naming ``selector``."""
    lines = source.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(f"def {selector}(")), None)
    if start is None:
        return "".join(line for line in lines if selector in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
               len(lines))
    return "".join(lines[start:end]).rstrip("\n") + "\n"


def test_the_guide_quotes_the_files_that_run():
    """Every code block of the guide that names a file is that file (or the named part of it), byte for byte."""
    blocks = _blocks(open(GUIDE).read())
    assert {path for path, _, _ in blocks} >= {
        "segmentation/model/output_math/formulations/huber_offsets.py", "segmentation/config/defaults.py",
        "configs/synthetic/om_huber_offsets.yaml", "tests/model/output_math/test_huber_offsets.py"}
    for path, selector, code in blocks:
        source = open(os.path.join(ROOT, path)).read()
        assert code == (_excerpt(source, selector) if selector else source), path
