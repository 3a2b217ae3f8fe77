"""Metrics: semantic (confusion matrix) and panoptic quality."""
from .panoptic import PanopticEvaluator, id2rgb, rgb2id, to_coco_panoptic
from .semantic import SemanticEvaluator

__all__ = ["PanopticEvaluator", "SemanticEvaluator", "id2rgb", "rgb2id", "to_coco_panoptic"]
