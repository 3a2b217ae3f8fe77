"""COCO mask AP of the thing instances of panoptic predictions, through pycocotools' COCOeval('segm') (the instances
and their scores: ``instance.py``)."""
import contextlib
import io
import json
import os

import numpy as np

from .instance import InstanceEvaluator, instance_predictions  # noqa: F401  (instance_predictions: re-exported)


class CocoInstanceEvaluator(InstanceEvaluator):
    """Accumulates instance predictions and evaluates them against a COCO instances JSON (``instances_*.json``).

    Category ids are the metadata's ``eval_ids`` (the dataset's own category ids for COCO-format datasets). With
    ``output_dir``, ``evaluate`` also writes the detections in the official results format
    (``coco_instances_results.json``, the file COCO's evaluation server takes).
    """

    def __init__(self, instances_json, metadata, output_dir=None):
        from pycocotools.coco import COCO
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(instances_json)
        self.metadata = metadata
        self.output_dir = output_dir
        self.predictions = []  # (COCO image id, [detection in the results format, ...]) per image

    def update(self, image_id, instances):
        """Add one image (its COCO image id, int or digit string); ``instances``: list of (train id, mask, score)."""
        from pycocotools import mask as mask_util
        image_id = int(image_id)
        detections = []
        for cls, mask, score in instances:
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            detections.append({"image_id": image_id, "category_id": int(self.metadata.eval_ids[cls]),
                               "segmentation": rle, "score": float(score)})
        self.predictions.append((image_id, detections))

    def official_metrics(self):
        """Dict with AP and AP50 (percent) of the masks, over the images seen."""
        from pycocotools.cocoeval import COCOeval
        results = [d for _, detections in self.predictions for d in detections]
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, "coco_instances_results.json"), "w") as f:
                json.dump(results, f)
        if not results:
            return {"AP": 0.0, "AP50": 0.0}
        with contextlib.redirect_stdout(io.StringIO()):
            detections = self.coco.loadRes(results)
            ev = COCOeval(self.coco, detections, iouType="segm")
            ev.params.imgIds = sorted({image_id for image_id, _ in self.predictions})
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return {"AP": 100 * float(ev.stats[0]), "AP50": 100 * float(ev.stats[1])}
