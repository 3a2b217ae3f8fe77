"""The evaluation loop: the network, one decoding path (the output mathematics), the evaluators of the config.

A conventional model is decoded through the base formulation, an OM model through its own (``output_math_view``);
the deprecated TEST.ORACLE_* keys add the oracle mixins. Each image's decoded variables go to every evaluator of
``build_evaluators`` (evaluation/base.py: semantic, panoptic, instance AP, official-format files, panels), whose
metrics are merged, printed as tables and written to ``metrics.json``.
"""
import json
import logging
import os
import time
import warnings
from collections.abc import Iterable

import torch

from ..evaluation import build_evaluators
from ..model.output_math.wrapper import output_math_view
from ..utils import comm
from ..utils.logger import format_seconds
from .inference import network_outputs

logger = logging.getLogger("segmentation")

# deprecated TEST key -> the OM mixin it stands for
ORACLE_KEYS = {"ORACLE_SEMANTIC": "oracle-semantics", "ORACLE_CENTER": "oracle-centers",
               "ORACLE_OFFSET": "oracle-offsets"}


def evaluation_dir(cfg, checkpoint):
    """``OUTPUT_DIR/eval/<split>-<checkpoint name>-<hash>``: one folder per evaluation setting, so that an evaluation
    never overwrites the training run's files nor another evaluation's; the hash covers the config keys that change
    predictions at test time (TEST, POST_PROCESSING, OM, DATASET) and the checkpoint's path as given (TEST.MODEL_FILE
    is in TEST, but MODEL.WEIGHTS is not: two runs' final_state.pth given so got one folder), the same on every
    process."""
    import hashlib

    from ..config import dump_config
    relevant = "\n".join([dump_config(cfg[k]) for k in ("TEST", "POST_PROCESSING", "OM", "DATASET")]
                         + [os.path.normpath(checkpoint)])
    digest = hashlib.sha1(relevant.encode()).hexdigest()[:8]
    stem = os.path.splitext(os.path.basename(checkpoint))[0].replace(".pth", "")
    return os.path.join(cfg.OUTPUT_DIR, "eval", f"{cfg.DATASET.TEST_SPLIT}-{stem}-{digest}")


def check_test_config(cfg):
    t = cfg.TEST
    unsupported = [("TEST.EVAL_FOREGROUND", t.EVAL_FOREGROUND), ("TEST.ORACLE_FOREGROUND", t.ORACLE_FOREGROUND)]
    bad = [k for k, v in unsupported if v]
    if bad:
        raise NotImplementedError(f"{', '.join(bad)}: not available in this version (the original's foreground "
                                  f"head is not part of this repository); use the defaults.")


def oracle_mixins(cfg):
    """The OM mixins that the deprecated TEST.ORACLE_* keys ask for (with a deprecation warning)."""
    keys = [k for k in ORACLE_KEYS if getattr(cfg.TEST, k)]
    mixins = tuple(ORACLE_KEYS[k] for k in keys if ORACLE_KEYS[k] not in cfg.OM.MIXINS)
    if keys:
        verb = "is" if len(keys) == 1 else "are"
        message = (f"TEST.{', TEST.'.join(keys)} {verb} deprecated: the OM mixins {', '.join(mixins)} are added to "
                   f"the decoding; write OM.NAME panoptic-deeplab and OM.MIXINS "
                   f"{tuple(ORACLE_KEYS[k] for k in keys)} instead.")
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        logger.warning(message)
    return mixins


def format_metrics_table(metrics):
    rows = ["|        |    PQ |    SQ |    RQ |", "|--------|-------|-------|-------|"]
    for name, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
        if f"PQ{suffix}" in metrics:
            rows.append(f"| {name:6s} | {metrics['PQ' + suffix]:5.1f} | {metrics['SQ' + suffix]:5.1f} | "
                        f"{metrics['RQ' + suffix]:5.1f} |")
    lines = rows if "PQ" in metrics else []
    if "AP" in metrics:
        lines.append(f"mask AP {metrics['AP']:.1f}  AP50 {metrics['AP50']:.1f}")
    lines.append(f"mIoU {metrics['mIoU']:.1f}  fwIoU {metrics['fwIoU']:.1f}  mACC {metrics['mACC']:.1f}  "
                 f"pACC {metrics['pACC']:.1f}   (all in percent)")
    return "\n".join(lines)


def format_per_class_table(metrics):
    """One row per class: IoU and, for a panoptic evaluation, PQ / SQ / RQ and the TP / FP / FN counts."""
    iou, panoptic = metrics.get("IoU", {}), metrics.get("per_class", {})
    names = list(dict.fromkeys([*iou, *panoptic]))
    if not names:
        return ""
    width = max(len("class"), *(len(n) for n in names))
    head = f"| {'class':{width}s} |   IoU |" + ("    PQ |    SQ |    RQ |    TP |    FP |    FN |" if panoptic else "")
    rows = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for name in names:
        row = f"| {name:{width}s} | " + (f"{iou[name]:5.1f}" if name in iou else "    -") + " |"
        if panoptic:
            p = panoptic.get(name)
            row += (f" {p['PQ']:5.1f} | {p['SQ']:5.1f} | {p['RQ']:5.1f} | {p['TP']:5d} | {p['FP']:5d} | {p['FN']:5d} |"
                    if p else "     - |     - |     - |     - |     - |     - |")
        rows.append(row)
    return "\n".join(rows)


def _log_progress(i, total, t_net, t_post, t_start):
    """A progress bar with the network and post-processing time per image and the ETA, every 5 % of the split."""
    if (i + 1) % max(1, total // 20) == 0 or i + 1 == total:
        elapsed = time.perf_counter() - t_start
        filled = 20 * (i + 1) // total
        logger.info("eval [%s%s] %d/%d  network %.3fs/img  post-processing %.3fs/img  eta %s", "#" * filled,
                    "." * (20 - filled), i + 1, total, t_net / (i + 1), t_post / (i + 1),
                    format_seconds(elapsed / (i + 1) * (total - i - 1)))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def decode(cfg, model, batch, device, names):
    """({name: value} of the OM variables ``names`` for one batch, network seconds, decoding seconds)."""
    images = batch["image"].to(device)
    t0 = time.perf_counter()
    om = model.build(network_outputs(cfg, model.net, images), images, {"panoptic": batch["panoptic"]})
    _sync(device)
    t1 = time.perf_counter()
    values = dict(zip(names, om.request(*names)))
    _sync(device)
    return values, t1 - t0, time.perf_counter() - t1


def evaluate(cfg, model: torch.nn.Module, loader: Iterable[dict], metadata, device: torch.device,
             output_dir: str | None = None) -> dict:
    """Evaluate ``model`` (conventional or OM-wrapped) on ``loader`` (batch 1) with the evaluators of the config;
    returns the merged metrics (percent) and writes ``metrics.json``, panels and the files the evaluators write
    (TEST.SAVE_PREDICTIONS) into ``output_dir``."""
    check_test_config(cfg)
    model = output_math_view(model, cfg, metadata, extra_mixins=oracle_mixins(cfg)).eval()
    evaluators = build_evaluators(cfg, metadata, output_dir)
    for evaluator in evaluators:
        evaluator.reset()
    names = tuple(dict.fromkeys(name for evaluator in evaluators for name in evaluator.needs))
    total = len(loader)
    t_net = t_post = 0.0
    t_start = time.perf_counter()
    for i, batch in enumerate(loader):
        outputs, dt_net, dt_post = decode(cfg, model, batch, device, names)
        t_net, t_post = t_net + dt_net, t_post + dt_post
        for evaluator in evaluators:
            evaluator.process(batch, outputs)
        _log_progress(i, total, t_net, t_post, t_start)
    for evaluator in evaluators:  # with several processes each saw its shard
        evaluator.synchronize()
    n_images = int(comm.all_reduce_sum(torch.tensor(total)))
    metrics = {}
    for evaluator in evaluators:
        metrics.update(evaluator.evaluate())
    metrics["time_network_s"] = t_net / max(total, 1)
    metrics["time_post_processing_s"] = t_post / max(total, 1)
    logger.info("Results on %s (%d images):\n%s", cfg.DATASET.TEST_SPLIT, n_images, format_metrics_table(metrics))
    per_class = format_per_class_table(metrics)
    if per_class:
        logger.info("Per class (percent):\n%s", per_class)
    if output_dir and comm.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics
