"""Cityscapes instance AP through cityscapesscripts' own ``evalInstanceLevelSemanticLabeling``.

Predictions are written in the official submission format (per image a ``<image>_pred.txt`` listing
``<mask>.png <label id> <confidence>`` lines, one binary PNG per instance) and the official function evaluates them
against ``gtFine/{split}/*/*_gtFine_instanceIds.png``. Two incompatibilities of cityscapesscripts 2.3.0 with numpy 2
are handled here, for the duration of the call, without touching the installed package: ``np.in1d`` (removed in
numpy 2.4) is supplied to that module, and its JSON writer gets numpy scalars converted. Everything it writes
(``gtInstances.json``, ``matches.json``) goes into the prediction folder, never into the working directory or
site-packages.
"""
import contextlib
import copy
import io
import json
import os
import shutil
import tempfile
import types

import numpy as np
from PIL import Image

from .instance import InstanceEvaluator


def _numpy_compat():
    """A stand-in for the ``numpy`` module with ``in1d`` (flattened ``isin``) restored."""
    compat = types.ModuleType("numpy")
    compat.__getattr__ = lambda name: getattr(np, name)
    compat.in1d = lambda a, b, assume_unique=False, invert=False: np.isin(
        a, b, assume_unique=assume_unique, invert=invert).ravel()
    return compat


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj.__dict__


@contextlib.contextmanager
def official_instance_module(work_dir):
    """cityscapesscripts' evalInstanceLevelSemanticLabeling made to run under numpy 2 and to write only into
    ``work_dir``; the module is restored on exit."""
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as module

    def write_json(obj, file_name):
        path = file_name if os.path.isabs(file_name) else os.path.join(work_dir, file_name)
        with open(path, "w") as f:
            json.dump(obj, f, default=_json_default)

    saved = module.np, module.writeDict2JSON
    module.np, module.writeDict2JSON = _numpy_compat(), write_json
    try:
        yield module
    finally:
        module.np, module.writeDict2JSON = saved


class CityscapesInstanceEvaluator(InstanceEvaluator):
    """Collects instance predictions per image and computes the official Cityscapes AP / AP50.

    The predictions are kept in memory (masks as PNG bytes) and written in the official format (``*_pred.txt`` and
    mask PNGs) by the process that evaluates, so several processes need no shared folder.

    Args:
        gt_dir: ``gtFine/{split}`` holding ``{city}/{image}_gtFine_instanceIds.png``.
        metadata: the dataset metadata (``eval_ids`` maps train ids to Cityscapes label ids).
        output_dir: folder for the prediction files (kept); None: a temporary folder removed after the evaluation.
    """

    def __init__(self, gt_dir, metadata, output_dir=None):
        if not os.path.isdir(gt_dir):
            raise FileNotFoundError(f"TEST.EVAL_INSTANCE on Cityscapes needs '{gt_dir}' with the "
                                    f"*_gtFine_instanceIds.png files (datasets/README.md).")
        self.gt_dir = gt_dir
        self.metadata = metadata
        self.output_dir = os.path.abspath(output_dir) if output_dir else None
        self.predictions = []  # (image id, ground-truth PNG, [(mask file name, PNG bytes, label id, score), ...])

    def update(self, image_id, instances):
        """Add the predictions of one image; ``instances``: list of (train id, bool mask [H, W], score)."""
        image_id = str(image_id)
        gt = os.path.join(self.gt_dir, image_id.split("_")[0], f"{image_id}_gtFine_instanceIds.png")
        if not os.path.isfile(gt):
            raise FileNotFoundError(f"Cityscapes instance ground truth '{gt}' is missing (datasets/README.md).")
        masks = []
        for k, (cls, mask, score) in enumerate(instances):
            png = io.BytesIO()
            Image.fromarray(mask.astype(np.uint8) * 255).save(png, format="PNG")
            masks.append((f"{image_id}_{k:03d}.png", png.getvalue(), int(self.metadata.eval_ids[cls]), float(score)))
        self.predictions.append((image_id, gt, masks))

    def _write(self, folder):
        """Write the predictions in the official format into ``folder``; the (prediction txt, ground truth) pairs."""
        pairs = []
        for image_id, gt, masks in self.predictions:
            for name, png, _, _ in masks:
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(png)
            txt = os.path.join(folder, f"{image_id}_pred.txt")
            with open(txt, "w") as f:
                f.writelines(f"{name} {label} {score:.6f}\n" for name, _, label, score in masks)
            pairs.append((txt, gt))
        return pairs

    def official_metrics(self):
        """Dict with AP and AP50 (percent) of the official evaluation, and per-class values."""
        folder = self.output_dir or tempfile.mkdtemp(prefix="cityscapes_instances_")
        os.makedirs(folder, exist_ok=True)
        try:
            pairs = self._write(folder)
            with official_instance_module(folder) as module:
                args = copy.copy(module.args)
                args.predictionPath = folder
                args.predictionWalk = None
                args.gtInstancesFile = os.path.join(folder, "gtInstances.json")
                args.exportFile = os.path.join(folder, "resultInstanceLevelSemanticLabeling.json")
                args.JSONOutput, args.quiet, args.colorized, args.csv = False, True, False, False
                args.distanceAvailable = False
                if os.path.exists(args.gtInstancesFile):  # never reuse a cache of other ground truth
                    os.remove(args.gtInstancesFile)
                predictions, ground_truth = zip(*pairs) if pairs else ((), ())
                with contextlib.redirect_stdout(io.StringIO()):
                    result = module.evaluateImgLists(list(predictions), list(ground_truth), args)
        finally:
            if self.output_dir is None:
                shutil.rmtree(folder, ignore_errors=True)
        averages = result["averages"]
        per_class = {name: {"AP": 100 * float(v["ap"]), "AP50": 100 * float(v["ap50%"])}
                     for name, v in averages["classes"].items() if not np.isnan(v["ap"])}
        return {"AP": 100 * float(averages["allAp"]), "AP50": 100 * float(averages["allAp50%"]),
                "AP_per_class": per_class}
