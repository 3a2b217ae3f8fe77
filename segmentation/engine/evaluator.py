"""Inference over a split: network, decoding, metrics, visualizations."""
import json
import logging
import os
import time

import torch
import torch.nn.functional as F

from ..evaluation import PanopticEvaluator, SemanticEvaluator
from ..model.post_processing import get_panoptic_segmentation, get_semantic_segmentation
from ..utils.logger import format_seconds
from ..utils.visualization import colorize_panoptic, denormalize, save_panels

logger = logging.getLogger("segmentation")

SIZE_DIVISIBILITY = 32


def check_test_config(cfg):
    t = cfg.TEST
    unsupported = [("TEST.TEST_TIME_AUGMENTATION", t.TEST_TIME_AUGMENTATION), ("TEST.FLIP_TEST", t.FLIP_TEST),
                   ("TEST.SCALE_LIST", tuple(t.SCALE_LIST) not in ((1,), (1.0,))),
                   ("TEST.EVAL_INSTANCE", t.EVAL_INSTANCE), ("TEST.EVAL_FOREGROUND", t.EVAL_FOREGROUND),
                   ("TEST.ORACLE_FOREGROUND", t.ORACLE_FOREGROUND)]
    bad = [k for k, v in unsupported if v]
    if bad:
        raise NotImplementedError(f"{', '.join(bad)}: not available in this version; use the defaults.")


def pad_to_divisible(images, divisor=SIZE_DIVISIBILITY):
    """Zero-pad (the normalised mean colour) at the bottom/right to a multiple of ``divisor``."""
    h, w = images.shape[-2:]
    ph, pw = -h % divisor, -w % divisor
    return F.pad(images, (0, pw, 0, ph)) if ph or pw else images


@torch.no_grad()
def predict(model, images):
    """Network outputs at the size of ``images`` (padded internally to a multiple of 32)."""
    h, w = images.shape[-2:]
    out = model(pad_to_divisible(images))
    return {k: v[..., :h, :w] for k, v in out.items()}


def format_metrics_table(metrics):
    rows = ["|        |    PQ |    SQ |    RQ |", "|--------|-------|-------|-------|"]
    for name, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
        if f"PQ{suffix}" in metrics:
            rows.append(f"| {name:6s} | {metrics['PQ' + suffix]:5.1f} | {metrics['SQ' + suffix]:5.1f} | "
                        f"{metrics['RQ' + suffix]:5.1f} |")
    lines = rows if "PQ" in metrics else []
    lines.append(f"mIoU {metrics['mIoU']:.1f}  fwIoU {metrics['fwIoU']:.1f}  mACC {metrics['mACC']:.1f}  "
                 f"pACC {metrics['pACC']:.1f}   (all in percent)")
    return "\n".join(lines)


def evaluate(cfg, model, loader, metadata, device, output_dir=None):
    """Evaluate ``model`` on ``loader`` (batch 1); returns the metrics dict (percent) and writes metrics.json."""
    check_test_config(cfg)
    model.eval()
    panoptic = cfg.MODEL.META_ARCHITECTURE == "panoptic_deeplab" and cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE
    panoptic = panoptic and cfg.TEST.EVAL_PANOPTIC
    sem_eval = SemanticEvaluator(metadata.num_classes, metadata.ignore_label, list(metadata.class_names))
    pan_eval = PanopticEvaluator(metadata)
    pp = cfg.POST_PROCESSING
    vis_dir = os.path.join(output_dir, "vis") if output_dir else None
    if vis_dir:
        os.makedirs(vis_dir, exist_ok=True)
    total = len(loader) if cfg.TEST.MAX_IMAGES < 0 else min(len(loader), cfg.TEST.MAX_IMAGES)
    t_net = t_post = 0.0
    t_start = time.perf_counter()
    for i, batch in enumerate(loader):
        if i >= total:
            break
        images = batch["image"].to(device)
        t0 = time.perf_counter()
        out = predict(model, images)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        if cfg.TEST.ORACLE_SEMANTIC:
            sem_ids = batch["semantic"].to(device)
        else:
            sem_ids = get_semantic_segmentation(out["semantic"])
        gt_pan = batch["panoptic"][0]
        gt_sem = gt_pan // metadata.label_divisor
        sem_eval.update(sem_ids[0].cpu(), gt_sem)
        if panoptic:
            center = batch["center"].to(device) if cfg.TEST.ORACLE_CENTER else out["center"]
            offset = batch["offset"].to(device) if cfg.TEST.ORACLE_OFFSET else out["offset"]
            pan, _ = get_panoptic_segmentation(
                sem_ids, center, offset, thing_list=metadata.thing_ids, label_divisor=metadata.label_divisor,
                stuff_area=pp.STUFF_AREA, void_label=metadata.void_label, threshold=pp.CENTER_THRESHOLD,
                nms_kernel=pp.NMS_KERNEL, top_k=pp.TOP_K_INSTANCE)
            if device.type == "cuda":
                torch.cuda.synchronize()
            pan_eval.update(pan[0].cpu(), gt_pan)
        else:
            pan = sem_ids * metadata.label_divisor
        t_post += time.perf_counter() - t1
        t_net += t1 - t0
        if vis_dir and i < cfg.TEST.NUM_VIS:
            save_panels(os.path.join(vis_dir, f"{batch['file_name'][0]}.png"),
                        [denormalize(batch["image"][0], cfg.DATASET.MEAN, cfg.DATASET.STD),
                         colorize_panoptic(gt_pan.numpy(), metadata),
                         colorize_panoptic(pan[0].cpu().numpy(), metadata)])
        if (i + 1) % max(1, total // 10) == 0 or i + 1 == total:
            elapsed = time.perf_counter() - t_start
            logger.info("eval %d/%d  network %.3fs/img  post-processing %.3fs/img  eta %s", i + 1, total,
                        t_net / (i + 1), t_post / (i + 1), format_seconds(elapsed / (i + 1) * (total - i - 1)))
    metrics = sem_eval.evaluate()
    if panoptic:
        metrics.update(pan_eval.evaluate())
    metrics["time_network_s"] = t_net / max(total, 1)
    metrics["time_post_processing_s"] = t_post / max(total, 1)
    logger.info("Results on %s (%d images):\n%s", cfg.DATASET.TEST_SPLIT, total, format_metrics_table(metrics))
    if output_dir:
        with open(os.path.join(output_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics
