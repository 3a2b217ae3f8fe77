"""Metrics (semantic confusion matrix, panoptic quality, instance AP) and official-format prediction writers."""
from . import visualization  # noqa: F401  (registration; the other evaluator modules are imported below)
from .base import EVALUATOR_REGISTRY, DatasetEvaluator, build_evaluators
from .build import INSTANCE_EVALUATOR_REGISTRY, build_instance_evaluator
from .cityscapes_instance import CityscapesInstanceEvaluator
from .coco_instance import CocoInstanceEvaluator, instance_predictions
from .panoptic import PanopticEvaluator, id2rgb, rgb2id, to_coco_panoptic
from .semantic import SemanticEvaluator
from .writers import PredictionWriter

__all__ = ["EVALUATOR_REGISTRY", "INSTANCE_EVALUATOR_REGISTRY", "CityscapesInstanceEvaluator", "CocoInstanceEvaluator",
           "DatasetEvaluator", "PanopticEvaluator", "PredictionWriter", "SemanticEvaluator", "build_evaluators",
           "build_instance_evaluator", "id2rgb", "instance_predictions", "rgb2id", "to_coco_panoptic"]
