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


def test_each_checkpoint_and_test_setting_has_its_own_evaluation_folder(synthetic_cfg, tmp_path):
    """Two runs' final_state.pth given by MODEL.WEIGHTS (which test_net clears once it has read it) with one config
    file get two folders; the same checkpoint and settings get the same folder; a test-time key changes it."""
    from segmentation.engine.evaluator import evaluation_dir
    from segmentation.engine.predictor import checkpoint_path_for_inference
    folders = []
    for run in ("run1", "run2", "run1"):
        (tmp_path / run).mkdir(exist_ok=True)
        torch.save({}, tmp_path / run / "final_state.pth")
        cfg = synthetic_cfg.clone()
        cfg.MODEL.WEIGHTS = str(tmp_path / run / "final_state.pth")
        folders.append(evaluation_dir(cfg, checkpoint_path_for_inference(cfg)))
    assert folders[0] != folders[1] and folders[0] == folders[2]
    assert folders[0].startswith(f"{synthetic_cfg.OUTPUT_DIR}/eval/val-final_state-")
    cfg = synthetic_cfg.clone()
    cfg.POST_PROCESSING.CENTER_THRESHOLD = 0.3
    assert evaluation_dir(cfg, str(tmp_path / "run1" / "./final_state.pth")) != folders[0]
    assert evaluation_dir(synthetic_cfg, str(tmp_path / "run1" / "./final_state.pth")) == folders[0]
