"""Instance AP as a DatasetEvaluator: the panoptic prediction's thing segments, scored, through the official
evaluator of the dataset's instance ground truth (``build.py``: pycocotools or cityscapesscripts)."""
import os

from ..utils import comm
from .base import EVALUATOR_REGISTRY, DatasetEvaluator, is_panoptic
from .build import build_instance_evaluator
from .coco_instance import instance_predictions


class InstanceAPEvaluator(DatasetEvaluator):
    """AP / AP50 (percent) of the thing segments of ``panoptic_pred``, scored by TEST.INSTANCE_SCORE_TYPE from
    ``semantic_prob_pred`` and ``center_pred``."""

    needs = ("panoptic_pred", "semantic_prob_pred", "center_pred")

    def __init__(self, official, metadata, score_type):
        self.official, self.metadata, self.score_type = official, metadata, score_type

    def process(self, inputs, outputs):
        self.official.update(inputs["file_name"][0], instance_predictions(
            outputs["panoptic_pred"][0].cpu(), outputs["semantic_prob_pred"][0].cpu(),
            outputs["center_pred"][0, 0].cpu(), self.metadata, self.score_type))

    def evaluate(self):
        return self.official.evaluate()


@EVALUATOR_REGISTRY.register("instance")
def build_instance_ap_evaluator(cfg, metadata, output_dir):
    """Instance AP: with TEST.EVAL_INSTANCE, single-process, for a panoptic model."""
    if not cfg.TEST.EVAL_INSTANCE:
        return None
    if not is_panoptic(cfg):
        raise NotImplementedError("TEST.EVAL_INSTANCE needs a panoptic model (MODEL.META_ARCHITECTURE "
                                  "panoptic_deeplab with TEST.EVAL_PANOPTIC True).")
    if comm.get_world_size() > 1:
        raise NotImplementedError("TEST.EVAL_INSTANCE is single-process: run tools/test_net.py without torchrun.")
    folder = os.path.join(output_dir, cfg.TEST.INSTANCE_FOLDER) if output_dir and cfg.TEST.SAVE_PREDICTIONS else None
    return InstanceAPEvaluator(build_instance_evaluator(cfg, metadata, folder), metadata,
                               cfg.TEST.INSTANCE_SCORE_TYPE)
