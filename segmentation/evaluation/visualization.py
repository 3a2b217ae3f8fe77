"""Panels of the first TEST.NUM_VIS images (image | ground truth | prediction, panoptic colours) as a
DatasetEvaluator that writes files and returns no metric."""
import os

from ..utils import comm
from ..utils.visualization import colorize_panoptic, denormalize, save_panels
from .base import EVALUATOR_REGISTRY, DatasetEvaluator, is_panoptic


class VisualizationWriter(DatasetEvaluator):
    """Writes ``<folder>/<file_name>.png`` for the first ``count`` images this process sees."""

    def __init__(self, folder, metadata, count, mean, std, panoptic):
        self.folder, self.metadata, self.count, self.mean, self.std = folder, metadata, count, mean, std
        self.key = "panoptic_pred" if panoptic else "semantic_pred"
        self.needs = (self.key,)
        self.seen = 0

    def reset(self):
        self.seen = 0

    def process(self, inputs, outputs):
        if self.seen >= self.count:
            return
        self.seen += 1
        prediction = outputs[self.key][0].cpu()
        if self.key == "semantic_pred":  # a semantic-only model: its classes as stuff segments
            prediction = prediction * self.metadata.label_divisor
        os.makedirs(self.folder, exist_ok=True)
        save_panels(os.path.join(self.folder, f"{inputs['file_name'][0]}.png"),
                    [denormalize(inputs["image"][0], self.mean, self.std),
                     colorize_panoptic(inputs["panoptic"][0].numpy(), self.metadata),
                     colorize_panoptic(prediction.numpy(), self.metadata)])


@EVALUATOR_REGISTRY.register("visualization")
def build_visualization_writer(cfg, metadata, output_dir):
    """vis/ panels: TEST.NUM_VIS > 0, with an output folder, on the main process."""
    if not output_dir or cfg.TEST.NUM_VIS <= 0 or not comm.is_main_process():
        return None
    return VisualizationWriter(os.path.join(output_dir, "vis"), metadata, cfg.TEST.NUM_VIS, cfg.DATASET.MEAN,
                               cfg.DATASET.STD, is_panoptic(cfg))
