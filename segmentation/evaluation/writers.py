"""Predictions in the official file formats (TEST.SAVE_PREDICTIONS), ready for the official evaluators and servers.

* semantic: ``<SEMANTIC_FOLDER>/<image>.png``, one channel of *evaluation* ids (Cityscapes label ids, COCO
  category ids; the train ids for datasets without a separate evaluation id); unlabelled pixels get 0 (or the
  ignore label for datasets without evaluation ids);
* panoptic: ``<PANOPTIC_FOLDER>/<image>.png`` in the COCO panoptic colour encoding (id = R + 256 G + 256^2 B) and
  ``<PANOPTIC_FOLDER>.json`` with ``annotations`` (segments_info with evaluation category ids) and ``categories``.
  For Cityscapes this is the format of cityscapesscripts' ``evalPanopticSemanticLabeling``.

Instance predictions are written by the instance evaluators (Cityscapes txt + masks, COCO results JSON).
"""
import json
import os

import numpy as np
from PIL import Image

from ..utils import comm
from .base import EVALUATOR_REGISTRY, DatasetEvaluator, is_panoptic
from .panoptic import id2rgb, to_coco_panoptic


def eval_id_table(metadata):
    """int64 [num_classes]: evaluation id of every train id."""
    return np.asarray(metadata.eval_ids or range(metadata.num_classes), dtype=np.int64)


def _json_image_id(image_id):
    return int(image_id) if str(image_id).isdigit() else str(image_id)


class PredictionWriter:
    """Writes one image at a time (``write``); ``finish`` writes the panoptic JSON and returns its path."""

    def __init__(self, output_dir, metadata, semantic_folder="semantic", panoptic_folder="panoptic"):
        self.metadata = metadata
        self.semantic_dir = os.path.join(output_dir, semantic_folder)
        self.panoptic_dir = os.path.join(output_dir, panoptic_folder)
        self.panoptic_json = self.panoptic_dir + ".json"
        self.eval_ids = eval_id_table(metadata)
        # pixels without a class (the ignore label, e.g. from TEST.ORACLE_SEMANTIC): evaluation id 0 (Cityscapes'
        # "unlabeled", COCO's void) where evaluation ids exist, else the ignore label itself
        self.void_eval_id = 0 if metadata.eval_ids else metadata.ignore_label
        self.annotations = []
        os.makedirs(self.semantic_dir, exist_ok=True)

    def write(self, image_id, semantic, panoptic=None):
        """semantic: train ids [H, W]; panoptic: optional train-id-encoded panoptic map [H, W] (arrays or tensors)."""
        semantic = np.asarray(semantic.cpu() if hasattr(semantic, "cpu") else semantic, dtype=np.int64)
        known = (semantic >= 0) & (semantic < len(self.eval_ids))
        ids = np.where(known, self.eval_ids[np.where(known, semantic, 0)], self.void_eval_id)
        ids = ids.astype(np.uint8 if ids.max(initial=0) < 256 else np.uint16)
        Image.fromarray(ids).save(os.path.join(self.semantic_dir, f"{image_id}.png"))
        if panoptic is None:
            return
        os.makedirs(self.panoptic_dir, exist_ok=True)
        panoptic = np.asarray(panoptic.cpu() if hasattr(panoptic, "cpu") else panoptic, dtype=np.int64)
        segment_ids, segments = to_coco_panoptic(panoptic, self.metadata, category_ids=self.eval_ids)
        Image.fromarray(id2rgb(segment_ids)).save(os.path.join(self.panoptic_dir, f"{image_id}.png"))
        self.annotations.append({"image_id": _json_image_id(image_id), "file_name": f"{image_id}.png",
                                 "segments_info": segments})

    def categories(self):
        m = self.metadata
        return [{"id": int(self.eval_ids[c]), "name": name, "isthing": int(c in m.thing_ids),
                 "color": list(m.colors[c])} for c, name in enumerate(m.class_names)]

    def finish(self, annotations=None):
        """Write ``<PANOPTIC_FOLDER>.json`` with ``annotations`` (default: this writer's) if any panoptic map was
        written; returns its path or None."""
        annotations = self.annotations if annotations is None else annotations
        if not annotations:
            return None
        with open(self.panoptic_json, "w") as f:
            json.dump({"annotations": annotations, "categories": self.categories()}, f)
        return self.panoptic_json


class OfficialFormatWriter(DatasetEvaluator):
    """TEST.SAVE_PREDICTIONS as a DatasetEvaluator: every image through a PredictionWriter; ``synchronize``
    gathers the panoptic annotations of every process and the main process writes the JSON. No metric."""

    def __init__(self, writer, panoptic):
        self.writer, self.panoptic = writer, panoptic
        self.needs = ("semantic_pred", "panoptic_pred") if panoptic else ("semantic_pred",)
        self.annotations = []

    def process(self, inputs, outputs):
        self.writer.write(inputs["file_name"][0], outputs["semantic_pred"][0],
                          outputs["panoptic_pred"][0] if self.panoptic else None)

    def synchronize(self):
        self.annotations = [a for part in comm.all_gather_object(self.writer.annotations) for a in part]

    def evaluate(self):
        if comm.is_main_process():
            self.writer.finish(self.annotations)
        return {}


@EVALUATOR_REGISTRY.register("predictions")
def build_prediction_writer(cfg, metadata, output_dir):
    """The official-format prediction files: with TEST.SAVE_PREDICTIONS (needs an output folder)."""
    if not cfg.TEST.SAVE_PREDICTIONS:
        return None
    if not output_dir:
        raise ValueError("TEST.SAVE_PREDICTIONS needs an output folder (OUTPUT_DIR).")
    writer = PredictionWriter(output_dir, metadata, cfg.TEST.SEMANTIC_FOLDER, cfg.TEST.PANOPTIC_FOLDER)
    return OfficialFormatWriter(writer, is_panoptic(cfg))
