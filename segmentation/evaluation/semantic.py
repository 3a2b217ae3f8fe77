"""Semantic segmentation metrics from a confusion matrix in train ids."""
import numpy as np
import torch

from ..utils import comm
from .base import EVALUATOR_REGISTRY, DatasetEvaluator


class SemanticEvaluator(DatasetEvaluator):
    """Accumulates a [C, C] confusion matrix (rows: ground truth, columns: prediction); ignore-label pixels skipped.
    As a DatasetEvaluator it reads ``semantic_pred`` and the ground truth ``panoptic // label_divisor``."""

    needs = ("semantic_pred",)

    def __init__(self, num_classes, ignore_label=255, class_names=None, label_divisor=None):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.label_divisor = label_divisor
        self.reset()

    def reset(self):
        self.conf = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, gt):
        """pred, gt: integer tensors or arrays of the same shape (train ids)."""
        pred, gt = torch.as_tensor(pred).reshape(-1).long(), torch.as_tensor(gt).reshape(-1).long()
        valid = gt != self.ignore_label
        if ((gt[valid] < 0) | (gt[valid] >= self.num_classes)).any():
            raise ValueError(f"Ground truth holds ids outside 0..{self.num_classes - 1} and the ignore label.")
        n = self.num_classes
        idx = gt[valid] * n + pred[valid].clamp(0, n - 1)
        self.conf += torch.bincount(idx, minlength=n * n).view(n, n).cpu().numpy()

    def process(self, inputs, outputs):
        self.update(outputs["semantic_pred"][0].cpu(), inputs["panoptic"][0] // self.label_divisor)

    def synchronize(self):
        comm.all_reduce_sum(self.conf)

    def evaluate(self):
        """Dict of mIoU, fwIoU, mACC, pACC and per-class IoU, all in percent."""
        conf = self.conf.astype(np.float64)
        tp = np.diag(conf)
        pos_gt, pos_pred = conf.sum(1), conf.sum(0)
        union = pos_gt + pos_pred - tp
        iou_valid, acc_valid = union > 0, pos_gt > 0
        iou = np.divide(tp, union, out=np.zeros_like(tp), where=iou_valid)
        acc = np.divide(tp, pos_gt, out=np.zeros_like(tp), where=acc_valid)
        total = conf.sum()
        freq = pos_gt / total if total else pos_gt
        return {
            "mIoU": 100 * iou[iou_valid].mean() if iou_valid.any() else 0.0,
            "fwIoU": 100 * float((freq[iou_valid] * iou[iou_valid]).sum()),
            "mACC": 100 * acc[acc_valid].mean() if acc_valid.any() else 0.0,
            "pACC": 100 * tp.sum() / total if total else 0.0,
            "IoU": {name: 100 * float(v) for name, v, ok in zip(self.class_names, iou, iou_valid) if ok},
        }


@EVALUATOR_REGISTRY.register("semantic")
def build_semantic_evaluator(cfg, metadata, output_dir):
    """mIoU, fwIoU, mACC, pACC and per-class IoU: always."""
    return SemanticEvaluator(metadata.num_classes, metadata.ignore_label, list(metadata.class_names),
                             metadata.label_divisor)
