"""Instance AP of panoptic predictions: every thing segment of a predicted panoptic map is one instance, scored as
the original repository does (TEST.INSTANCE_SCORE_TYPE): ``semantic`` = mean probability of its class over its mask,
``instance`` = centre heatmap value at the mask's centre of mass, ``both`` = their product. ``InstanceEvaluator`` is
the DatasetEvaluator side shared by the official evaluators (``coco_instance.py``, ``cityscapes_instance.py``),
which add ``update(image_id, instances)`` and ``evaluate``; ``build.py`` picks one for the dataset."""
import torch

from .base import DatasetEvaluator

SCORE_TYPES = ("semantic", "instance", "both")


def instance_predictions(panoptic, semantic_prob, center, metadata, score_type="semantic"):
    """List of (train id, bool mask [H, W], score) for the thing segments of one panoptic map.

    Args:
        panoptic: long tensor [H, W] in the train-id encoding; semantic_prob: float [C, H, W] class probabilities;
        center: float [H, W] centre heatmap.
    """
    if score_type not in SCORE_TYPES:
        raise ValueError(f"TEST.INSTANCE_SCORE_TYPE must be one of {', '.join(SCORE_TYPES)}, got '{score_type}'.")
    div = metadata.label_divisor
    ids = torch.unique(panoptic)
    ids = ids[(ids % div > 0) & (ids != metadata.void_label)]
    out = []
    for pid in ids.tolist():  # one entry per predicted instance: the output is a list of masks anyway
        cls = pid // div
        if cls not in metadata.thing_ids:
            continue
        mask = panoptic == pid
        ys, xs = torch.nonzero(mask, as_tuple=True)
        sem_score = float(semantic_prob[cls][mask].mean())
        ins_score = float(center[int(ys.float().mean()), int(xs.float().mean())])
        score = {"semantic": sem_score, "instance": ins_score, "both": sem_score * ins_score}[score_type]
        out.append((cls, mask.cpu().numpy(), score))
    return out


class InstanceEvaluator(DatasetEvaluator):
    """Reads ``panoptic_pred``, ``semantic_prob_pred`` and ``center_pred`` and hands each image's scored thing
    segments to ``update(image_id, instances)``; ``score_type`` is TEST.INSTANCE_SCORE_TYPE."""

    needs = ("panoptic_pred", "semantic_prob_pred", "center_pred")
    score_type = "semantic"

    def update(self, image_id, instances):
        raise NotImplementedError

    def process(self, inputs, outputs):
        self.update(inputs["file_name"][0], instance_predictions(
            outputs["panoptic_pred"][0].cpu(), outputs["semantic_prob_pred"][0].cpu(),
            outputs["center_pred"][0, 0].cpu(), self.metadata, self.score_type))
