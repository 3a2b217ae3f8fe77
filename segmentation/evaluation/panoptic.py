"""Panoptic quality (PQ, SQ, RQ) with the matching rules of the COCO panoptic API (panopticapi's pq_compute).

Both maps use the train-id encoding of ``DatasetMetadata``: every distinct id is a segment; ``void_label`` is void;
a thing class with instance 0 is a crowd region. A ground-truth/prediction pair of the same class matches when its
IoU, with void pixels removed from the union, exceeds 0.5. Unmatched predictions lying more than half in void or in
the crowd region of their class are not false positives.
"""
import numpy as np

from ..data.datasets.coco_format import rgb2id  # noqa: F401  (re-exported: the inverse of id2rgb)
from ..utils import comm
from .base import EVALUATOR_REGISTRY, DatasetEvaluator, is_panoptic


class PanopticEvaluator(DatasetEvaluator):
    """PQ/SQ/RQ of ``panoptic_pred`` against the ground truth ``panoptic`` (train-id encoding)."""

    needs = ("panoptic_pred",)

    def __init__(self, metadata):
        self.meta = metadata
        self.reset()

    def reset(self):
        n = self.meta.num_classes
        self.tp, self.fp, self.fn = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.iou = np.zeros(n, np.float64)

    def update(self, pred, gt):
        """Accumulate one image; pred, gt: integer arrays/tensors [H, W] in the train-id encoding."""
        pred = np.asarray(pred.cpu() if hasattr(pred, "cpu") else pred).reshape(-1).astype(np.int64)
        gt = np.asarray(gt.cpu() if hasattr(gt, "cpu") else gt).reshape(-1).astype(np.int64)
        if pred.shape != gt.shape:
            raise ValueError(f"Prediction has {pred.size} pixels, ground truth {gt.size}.")
        m = self.meta
        div, void, n_cls = m.label_divisor, m.void_label, m.num_classes
        gt_ids, gt_inv, gt_area = np.unique(gt, return_inverse=True, return_counts=True)
        pr_ids, pr_inv, pr_area = np.unique(pred, return_inverse=True, return_counts=True)
        gt_cls, pr_cls = gt_ids // div, pr_ids // div
        gt_void, pr_void = gt_ids == void, pr_ids == void
        bad = ~pr_void & ((pr_cls < 0) | (pr_cls >= n_cls))
        if bad.any():
            raise ValueError(f"Predicted panoptic ids {pr_ids[bad].tolist()} decode to classes outside 0..{n_cls - 1}.")
        bad = ~gt_void & ((gt_cls < 0) | (gt_cls >= n_cls))
        if bad.any():
            raise ValueError(f"Ground-truth panoptic ids {gt_ids[bad].tolist()} are neither void nor a valid class.")
        is_thing = np.zeros(n_cls + 1, bool)
        is_thing[list(m.thing_ids)] = True
        gt_cls_safe = np.where(gt_void, n_cls, gt_cls)
        gt_crowd = is_thing[gt_cls_safe] & (gt_ids % div == 0) & ~gt_void

        n_gt, n_pr = len(gt_ids), len(pr_ids)
        inter = np.bincount(gt_inv * n_pr + pr_inv, minlength=n_gt * n_pr).reshape(n_gt, n_pr)
        void_inter = inter[gt_void].sum(0)
        union = gt_area[:, None] + pr_area[None, :] - inter - void_inter[None, :]
        iou = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
        match = ((inter > 0) & (iou > 0.5) & (gt_cls[:, None] == pr_cls[None, :]) & ~gt_void[:, None]
                 & ~pr_void[None, :] & ~gt_crowd[:, None])
        gi, pi = np.nonzero(match)
        np.add.at(self.tp, gt_cls[gi], 1)
        np.add.at(self.iou, gt_cls[gi], iou[gi, pi])

        gt_matched, pr_matched = match.any(1), match.any(0)
        fn = ~gt_matched & ~gt_void & ~gt_crowd
        np.add.at(self.fn, gt_cls[fn], 1)

        same_cls_crowd = gt_crowd[:, None] & (gt_cls[:, None] == pr_cls[None, :])
        ignored = void_inter + (inter * same_cls_crowd).sum(0)
        fp = ~pr_matched & ~pr_void & ~(ignored / pr_area > 0.5)
        np.add.at(self.fp, pr_cls[fp], 1)

    def process(self, inputs, outputs):
        self.update(outputs["panoptic_pred"][0].cpu(), inputs["panoptic"][0])

    def synchronize(self):
        for array in (self.tp, self.fp, self.fn, self.iou):
            comm.all_reduce_sum(array)

    def _average(self, classes):
        tp, fp, fn, iou = self.tp[classes], self.fp[classes], self.fn[classes], self.iou[classes]
        used = tp + fp + fn > 0
        if not used.any():
            return 0.0, 0.0, 0.0, 0
        denom = tp + 0.5 * fp + 0.5 * fn
        pq = np.where(used, iou / np.where(used, denom, 1), 0)
        sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0)
        rq = np.where(used, tp / np.where(used, denom, 1), 0)
        k = used.sum()
        return pq[used].sum() / k, sq[used].sum() / k, rq[used].sum() / k, int(k)

    def evaluate(self):
        """Dict with PQ/SQ/RQ for all classes, things (_th) and stuff (_st), and per-class values, in percent."""
        out = {}
        groups = {"": list(range(self.meta.num_classes)), "_th": list(self.meta.thing_ids),
                  "_st": list(self.meta.stuff_ids)}
        for suffix, classes in groups.items():
            pq, sq, rq, n = self._average(classes)
            out.update({f"PQ{suffix}": 100 * pq, f"SQ{suffix}": 100 * sq, f"RQ{suffix}": 100 * rq})
        per_class = {}
        for c, name in enumerate(self.meta.class_names):
            pq, sq, rq, n = self._average([c])
            if n:
                per_class[name] = {"PQ": 100 * pq, "SQ": 100 * sq, "RQ": 100 * rq, "TP": int(self.tp[c]),
                                   "FP": int(self.fp[c]), "FN": int(self.fn[c])}
        out["per_class"] = per_class
        return out


@EVALUATOR_REGISTRY.register("panoptic")
def build_panoptic_evaluator(cfg, metadata, output_dir):
    """PQ/SQ/RQ: for a panoptic model with TEST.EVAL_PANOPTIC."""
    return PanopticEvaluator(metadata) if is_panoptic(cfg) else None


def id2rgb(ids):
    """uint8 [H, W, 3] COCO-panoptic colour encoding of segment ids (id = R + 256 G + 256^2 B)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def to_coco_panoptic(panoptic, metadata, category_ids=None):
    """COCO-panoptic form of a train-id-encoded map: (segment-id map int64 [H, W], segments_info list).

    Segments get ids 1, 2, ... in increasing panoptic id; void pixels get id 0 and no entry. ``category_ids`` maps
    train ids to the category ids written in ``segments_info`` (default: the train ids).
    """
    pan = np.asarray(panoptic, dtype=np.int64)
    ids, inverse, area = np.unique(pan, return_inverse=True, return_counts=True)
    seg_ids = np.arange(1, len(ids) + 1)
    seg_ids[ids == metadata.void_label] = 0
    segments = []
    for pid, sid, a in zip(ids.tolist(), seg_ids.tolist(), area.tolist()):
        if sid == 0:
            continue
        cls, inst = divmod(pid, metadata.label_divisor)
        is_thing = cls in metadata.thing_ids
        segments.append({"id": sid, "category_id": int(category_ids[cls]) if category_ids is not None else cls,
                         "iscrowd": int(is_thing and inst == 0), "area": a, "isthing": int(is_thing)})
    return seg_ids[inverse].reshape(pan.shape), segments
