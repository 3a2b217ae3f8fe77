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

    Args:
        gt_dir: ``gtFine/{split}`` holding ``{city}/{image}_gtFine_instanceIds.png``.
        metadata: the dataset metadata (``eval_ids`` maps train ids to Cityscapes label ids).
        output_dir: folder for the prediction files (kept); None: a temporary folder removed after ``evaluate``.
    """

    def __init__(self, gt_dir, metadata, output_dir=None):
        if not os.path.isdir(gt_dir):
            raise FileNotFoundError(f"TEST.EVAL_INSTANCE on Cityscapes needs '{gt_dir}' with the "
                                    f"*_gtFine_instanceIds.png files (datasets/README.md).")
        self.gt_dir = gt_dir
        self.metadata = metadata
        self.keep = output_dir is not None
        self.output_dir = os.path.abspath(output_dir or tempfile.mkdtemp(prefix="cityscapes_instances_"))
        os.makedirs(self.output_dir, exist_ok=True)
        self.pairs = []  # (prediction txt, ground-truth PNG)

    def update(self, image_id, instances):
        """Write the predictions of one image; ``instances``: list of (train id, bool mask [H, W], score)."""
        image_id = str(image_id)
        gt = os.path.join(self.gt_dir, image_id.split("_")[0], f"{image_id}_gtFine_instanceIds.png")
        if not os.path.isfile(gt):
            raise FileNotFoundError(f"Cityscapes instance ground truth '{gt}' is missing (datasets/README.md).")
        lines = []
        for k, (cls, mask, score) in enumerate(instances):
            name = f"{image_id}_{k:03d}.png"
            Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(self.output_dir, name))
            lines.append(f"{name} {int(self.metadata.eval_ids[cls])} {float(score):.6f}\n")
        txt = os.path.join(self.output_dir, f"{image_id}_pred.txt")
        with open(txt, "w") as f:
            f.writelines(lines)
        self.pairs.append((txt, gt))

    def evaluate(self):
        """Dict with AP and AP50 (percent) of the official evaluation, and per-class values."""
        try:
            with official_instance_module(self.output_dir) as module:
                args = copy.copy(module.args)
                args.predictionPath = os.path.abspath(self.output_dir)
                args.predictionWalk = None
                args.gtInstancesFile = os.path.join(self.output_dir, "gtInstances.json")
                args.exportFile = os.path.join(self.output_dir, "resultInstanceLevelSemanticLabeling.json")
                args.JSONOutput, args.quiet, args.colorized, args.csv = False, True, False, False
                args.distanceAvailable = False
                if os.path.exists(args.gtInstancesFile):  # never reuse a cache of other ground truth
                    os.remove(args.gtInstancesFile)
                predictions, ground_truth = zip(*self.pairs) if self.pairs else ((), ())
                with contextlib.redirect_stdout(io.StringIO()):
                    result = module.evaluateImgLists(list(predictions), list(ground_truth), args)
        finally:
            if not self.keep:
                shutil.rmtree(self.output_dir, ignore_errors=True)
        averages = result["averages"]
        per_class = {name: {"AP": 100 * float(v["ap"]), "AP50": 100 * float(v["ap50%"])}
                     for name, v in averages["classes"].items() if not np.isnan(v["ap"])}
        return {"AP": 100 * float(averages["allAp"]), "AP50": 100 * float(averages["allAp50%"]),
                "AP_per_class": per_class}
