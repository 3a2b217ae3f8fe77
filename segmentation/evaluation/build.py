"""Instance-AP evaluators, selected by the format of the dataset's instance ground truth."""
import os

from ..utils.registry import Registry
from .base import EVALUATOR_REGISTRY, is_panoptic
from .cityscapes_instance import CityscapesInstanceEvaluator
from .coco_instance import CocoInstanceEvaluator

INSTANCE_EVALUATOR_REGISTRY = Registry(
    "instance evaluator",
    "an InstanceEvaluator (ground_truth_path, metadata, output_dir=None) with update(image_id, [(train id, bool "
    "mask [H, W], score), ...]) keeping picklable entries in self.predictions, and official_metrics() -> {'AP', "
    "'AP50', ...} in percent over them; output_dir receives the official prediction files. Keyed by the first "
    "element of the dataset's instance_ground_truth(cfg, split).",
    config_key="DATASET.DATASET (through its instance ground truth)")
INSTANCE_EVALUATOR_REGISTRY.register("coco")(CocoInstanceEvaluator)
INSTANCE_EVALUATOR_REGISTRY.register("cityscapes")(CityscapesInstanceEvaluator)


def build_instance_evaluator(cfg, metadata, output_dir=None):
    """The instance evaluator of the configured test split (TEST.EVAL_INSTANCE), writing into ``output_dir``."""
    from ..data.datasets import DATASET_REGISTRY
    ground_truth = DATASET_REGISTRY.get(cfg.DATASET.DATASET).instance_ground_truth(cfg, cfg.DATASET.TEST_SPLIT)
    if ground_truth is None:
        raise NotImplementedError(
            f"TEST.EVAL_INSTANCE: dataset '{cfg.DATASET.DATASET}' has no instance ground truth; instance AP is "
            f"available for coco_panoptic (instances_{{split}}2017.json) and cityscapes / cityscapes_panoptic "
            f"(gtFine instanceIds PNGs).")
    fmt, path = ground_truth
    if not os.path.exists(path):
        raise FileNotFoundError(f"TEST.EVAL_INSTANCE needs '{path}' (see datasets/README.md).")
    return INSTANCE_EVALUATOR_REGISTRY.get(fmt)(path, metadata, output_dir)


@EVALUATOR_REGISTRY.register("instance")
def build_instance_ap_evaluator(cfg, metadata, output_dir):
    """Instance AP: with TEST.EVAL_INSTANCE, for a panoptic model; the prediction files go to
    ``output_dir``/TEST.INSTANCE_FOLDER with TEST.SAVE_PREDICTIONS. With several processes the main one gathers
    every process's predictions and evaluates them all (InstanceEvaluator)."""
    if not cfg.TEST.EVAL_INSTANCE:
        return None
    if not is_panoptic(cfg):
        raise NotImplementedError("TEST.EVAL_INSTANCE needs a panoptic model (MODEL.META_ARCHITECTURE "
                                  "panoptic_deeplab with TEST.EVAL_PANOPTIC True).")
    folder = os.path.join(output_dir, cfg.TEST.INSTANCE_FOLDER) if output_dir and cfg.TEST.SAVE_PREDICTIONS else None
    evaluator = build_instance_evaluator(cfg, metadata, folder)
    evaluator.score_type = cfg.TEST.INSTANCE_SCORE_TYPE
    return evaluator
