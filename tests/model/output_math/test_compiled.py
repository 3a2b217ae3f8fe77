"""The Panoptic-DeepLab OM under torch.compile: its targets and its decoding trace in one graph (fullgraph, static
shapes: OM.MAX_INSTANCES thing segments, the static decoding) and equal the eager values exactly."""
import shutil

import numpy as np
import pytest
import torch

from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.data.datasets import render_scene
from segmentation.data.transforms import encode_panoptic
from segmentation.model.output_math import compose
from tests.model.output_math.test_panoptic_deeplab import _cfg, _losses
from tests.model.test_post_processing import _realistic_outputs

TARGETS = ("semantic_truth", "center_truth", "offset_truth", "semantic_weights_truth", "center_weights_truth",
           "offset_weights_truth")


def _batch(seed):
    rng = np.random.default_rng(seed)
    scenes = [render_scene(rng, 64, 96, max_objects=10, crowd_prob=0.5) for _ in range(2)]
    return torch.stack([encode_panoptic(ids, segs, META) for _, ids, segs in scenes])


def _targets(cfg):
    cls = compose("panoptic-deeplab", ())

    def targets(pan):
        om = cls({"panoptic_truth": pan}, config=cfg, metadata=META, losses=_losses(cfg))
        return tuple(getattr(om, name)() for name in TARGETS)
    return targets


def _decoding(cfg):
    cls = compose("panoptic-deeplab", ())

    def decode(logits, heat, offsets):
        om = cls({"semantic_pred": logits, "center_pred": heat, "offset_pred": offsets}, config=cfg, metadata=META)
        return om.panoptic_pred()
    return decode


def _check(fn, inputs, backend):
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=backend, fullgraph=True)  # a graph break would raise
    for args in inputs:
        eager, traced = fn(*args), compiled(*args)
        for a, b in zip(eager if isinstance(eager, tuple) else (eager,), traced if isinstance(traced, tuple)
                        else (traced,)):
            assert a.dtype == b.dtype and torch.equal(a, b)


def _decoding_inputs():
    outs = [_realistic_outputs(seed) for seed in range(3)]
    return [tuple(torch.cat([o[i] for o in outs[j:j + 2]]) for i in range(3)) for j in range(2)]


@pytest.mark.parametrize("part", ["targets", "decoding"])
def test_the_om_traces_in_one_graph_and_equals_eager(part):
    cfg = _cfg()
    cfg.POST_PROCESSING.TOP_K_INSTANCE = 8  # fewer than the peaks of the noisy heatmaps: the strict rule is used
    if part == "targets":
        _check(_targets(cfg), [(_batch(s),) for s in range(3)], "eager")
    else:
        _check(_decoding(cfg), _decoding_inputs(), "eager")


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="inductor needs a C++ compiler on CPU")
@pytest.mark.parametrize("part", ["targets", "decoding"])
def test_inductor_compiled_om_equals_eager_exactly(part):
    cfg = _cfg()
    cfg.POST_PROCESSING.TOP_K_INSTANCE = 8
    if part == "targets":
        _check(_targets(cfg), [(_batch(s),) for s in range(2)], "inductor")
    else:
        _check(_decoding(cfg), _decoding_inputs(), "inductor")
