"""The evaluation loop: one decoding path for every meta-architecture, and every registered evaluator follows the
protocol."""
import pytest
import torch

from segmentation.data import build_test_loader, get_metadata
from segmentation.engine import evaluate
from segmentation.evaluation import EVALUATOR_REGISTRY, DatasetEvaluator
from segmentation.model import build_model


@pytest.mark.parametrize("meta", ["deeplabv3", "deeplabv3plus"])
def test_semantic_only_models_are_decoded_through_the_base_formulation(synthetic_cfg, meta):
    synthetic_cfg.MODEL.META_ARCHITECTURE, synthetic_cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE = meta, False
    plus = synthetic_cfg.MODEL.DEEPLABV3PLUS
    plus.LOW_LEVEL_KEY, plus.LOW_LEVEL_CHANNELS = "layer_4", 24
    synthetic_cfg.TEST.MAX_IMAGES = 2
    metrics = evaluate(synthetic_cfg, build_model(synthetic_cfg), build_test_loader(synthetic_cfg),
                       get_metadata(synthetic_cfg), torch.device("cpu"))
    assert "mIoU" in metrics and "PQ" not in metrics


@pytest.mark.parametrize("name", EVALUATOR_REGISTRY.names())
def test_every_registered_evaluator_follows_the_protocol(synthetic_cfg, tmp_path, name):
    """Each builder gives an evaluator when its keys ask for it (None otherwise) that processes one image of
    decoded outputs, synchronises and returns a dict."""
    synthetic_cfg.TEST.SAVE_PREDICTIONS = True
    metadata = get_metadata(synthetic_cfg)
    evaluator = EVALUATOR_REGISTRY.get(name)(synthetic_cfg, metadata, str(tmp_path))
    if name == "instance":  # needs a dataset with instance ground truth (tests/evaluation): off by default
        assert evaluator is None
        return
    assert isinstance(evaluator, DatasetEvaluator)
    pan = torch.full((1, 4, 6), 1000)
    pan[0, :2, :3] = 4001
    outputs = {"semantic_pred": pan // 1000, "panoptic_pred": pan, "semantic_prob_pred": torch.rand(1, 7, 4, 6),
               "center_pred": torch.rand(1, 1, 4, 6)}
    inputs = {"panoptic": pan, "file_name": ["a"], "image": torch.zeros(1, 3, 4, 6)}
    evaluator.reset()
    evaluator.process(inputs, {k: outputs[k] for k in evaluator.needs})
    evaluator.synchronize()
    assert isinstance(evaluator.evaluate(), dict)
