"""Instance AP of panoptic predictions: every thing segment of a predicted panoptic map is one instance, scored as
the original repository does (TEST.INSTANCE_SCORE_TYPE): ``semantic`` = mean probability of its class over its mask,
``instance`` = centre heatmap value at the mask's centre of mass, ``both`` = their product. ``InstanceEvaluator`` is
the DatasetEvaluator side shared by the official evaluators (``coco_instance.py``, ``cityscapes_instance.py``),
which add ``update(image_id, instances)`` and ``official_metrics``; ``build.py`` picks one for the dataset."""
import torch

from ..utils import comm
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
    segments to ``update(image_id, instances)``; ``score_type`` is TEST.INSTANCE_SCORE_TYPE.

    Subclasses keep what ``update`` makes in ``self.predictions`` (a list of picklable entries, one per image) and
    compute the official metrics over it in ``official_metrics``. With several processes, each saw its shard:
    ``synchronize`` gathers every process's entries on the main process, which alone runs the official evaluation
    (and writes its files); every process returns its metrics.
    """

    needs = ("panoptic_pred", "semantic_prob_pred", "center_pred")
    score_type = "semantic"

    def update(self, image_id, instances):
        raise NotImplementedError

    def official_metrics(self):
        """Dict with AP, AP50 (percent), ... over ``self.predictions`` (called on the main process only)."""
        raise NotImplementedError

    def process(self, inputs, outputs):
        self.update(inputs["file_name"][0], instance_predictions(
            outputs["panoptic_pred"][0].cpu(), outputs["semantic_prob_pred"][0].cpu(),
            outputs["center_pred"][0, 0].cpu(), self.metadata, self.score_type))

    def synchronize(self):
        parts = comm.gather_object(self.predictions)
        self.predictions = [entry for part in parts for entry in part] if parts is not None else []

    def evaluate(self):
        if not comm.is_distributed():
            return self.official_metrics()
        metrics, failure = None, None
        if comm.is_main_process():
            try:
                metrics = self.official_metrics()
            except Exception as error:  # the others must not wait for metrics that never come
                failure = error
        metrics, message = comm.broadcast_object((metrics, None if failure is None else
                                                  f"{type(failure).__name__}: {failure}"))
        if failure is not None:
            raise failure
        if message is not None:
            raise RuntimeError(f"The instance evaluation failed on the main process: {message}")
        return metrics
