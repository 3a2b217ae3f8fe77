"""Inference over a split: network, decoding, metrics, visualizations."""
import json
import logging
import os
import time

import torch

from ..evaluation import PanopticEvaluator, SemanticEvaluator
from ..evaluation.build import build_instance_evaluator
from ..evaluation.coco_instance import instance_predictions
from ..evaluation.writers import PredictionWriter
from ..model.output_math.wrapper import OutputMathModel
from ..model.post_processing import get_panoptic_segmentation, get_semantic_segmentation
from ..utils import comm
from ..utils.logger import format_seconds
from ..utils.visualization import colorize_panoptic, denormalize, save_panels
from .inference import network_outputs

logger = logging.getLogger("segmentation")


def check_test_config(cfg):
    t = cfg.TEST
    oracles = [k for k in ("ORACLE_SEMANTIC", "ORACLE_CENTER", "ORACLE_OFFSET") if getattr(t, k)]
    if cfg.OM.NAME and oracles:
        raise ValueError(f"TEST.{', TEST.'.join(oracles)} apply to the conventional path; with OM.NAME use the OM "
                         f"mixins oracle-semantics, oracle-centers, oracle-offsets in OM.MIXINS.")
    unsupported = [("TEST.EVAL_FOREGROUND", t.EVAL_FOREGROUND), ("TEST.ORACLE_FOREGROUND", t.ORACLE_FOREGROUND)]
    bad = [k for k, v in unsupported if v]
    if bad:
        raise NotImplementedError(f"{', '.join(bad)}: not available in this version (the original's foreground "
                                  f"head is not part of this repository); use the defaults.")


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


def _save_panel(cfg, vis_dir, i, batch, gt_pan, pan, metadata):
    if vis_dir and i < cfg.TEST.NUM_VIS:
        save_panels(os.path.join(vis_dir, f"{batch['file_name'][0]}.png"),
                    [denormalize(batch["image"][0], cfg.DATASET.MEAN, cfg.DATASET.STD),
                     colorize_panoptic(gt_pan.numpy(), metadata), colorize_panoptic(pan[0].cpu().numpy(), metadata)])


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
def _decode_conventional(cfg, model, images, batch, metadata, panoptic, scores):
    """(semantic ids [1, H, W], panoptic ids [1, H, W], network s, post-processing s, scoring maps) with the pure
    functions; the scoring maps (class probabilities, centre heatmap) only when ``scores``."""
    device = images.device
    t0 = time.perf_counter()
    out = network_outputs(cfg, model, images)
    _sync(device)
    t1 = time.perf_counter()
    sem_ids = batch["semantic"].to(device) if cfg.TEST.ORACLE_SEMANTIC else get_semantic_segmentation(out["semantic"])
    if not panoptic:
        return sem_ids, sem_ids * metadata.label_divisor, t1 - t0, time.perf_counter() - t1, None
    pp = cfg.POST_PROCESSING
    center = batch["center"].to(device) if cfg.TEST.ORACLE_CENTER else out["center"]
    offset = batch["offset"].to(device) if cfg.TEST.ORACLE_OFFSET else out["offset"]
    pan, _ = get_panoptic_segmentation(
        sem_ids, center, offset, thing_list=metadata.thing_ids, label_divisor=metadata.label_divisor,
        stuff_area=pp.STUFF_AREA, void_label=metadata.void_label, threshold=pp.CENTER_THRESHOLD,
        nms_kernel=pp.NMS_KERNEL, top_k=pp.TOP_K_INSTANCE)
    _sync(device)
    aux = {"semantic_prob": torch.softmax(out["semantic"], 1), "center": center} if scores else None
    return sem_ids, pan, t1 - t0, time.perf_counter() - t1, aux


@torch.no_grad()
def _decode_om(cfg, model, images, batch, metadata, panoptic, scores):
    """Same as ``_decode_conventional`` through the OM (``panoptic_pred``), with the release policy of OM.RELEASE."""
    device = images.device
    t0 = time.perf_counter()
    om = model.build(network_outputs(cfg, model.net, images), images, {"panoptic": batch["panoptic"]})
    _sync(device)
    t1 = time.perf_counter()
    if not panoptic:
        (sem_ids,) = om.request("semantic_pred")
        return sem_ids, sem_ids * metadata.label_divisor, t1 - t0, time.perf_counter() - t1, None
    names = ("semantic_pred", "panoptic_pred") + (("semantic_prob_pred", "center_pred") if scores else ())
    values = om.request(*names)
    _sync(device)
    aux = {"semantic_prob": values[2], "center": values[3]} if scores else None
    return values[0], values[1], t1 - t0, time.perf_counter() - t1, aux


def _instance_evaluator(cfg, metadata, panoptic, output_dir):
    if not cfg.TEST.EVAL_INSTANCE:
        return None
    if not panoptic:
        raise NotImplementedError("TEST.EVAL_INSTANCE needs a panoptic model (MODEL.META_ARCHITECTURE "
                                  "panoptic_deeplab with TEST.EVAL_PANOPTIC True).")
    if comm.get_world_size() > 1:
        raise NotImplementedError("TEST.EVAL_INSTANCE is single-process: run tools/test_net.py without torchrun.")
    folder = os.path.join(output_dir, cfg.TEST.INSTANCE_FOLDER) if output_dir and cfg.TEST.SAVE_PREDICTIONS else None
    return build_instance_evaluator(cfg, metadata, folder)


def _prediction_writer(cfg, metadata, output_dir):
    if not cfg.TEST.SAVE_PREDICTIONS:
        return None
    if not output_dir:
        raise ValueError("TEST.SAVE_PREDICTIONS needs an output folder (OUTPUT_DIR).")
    return PredictionWriter(output_dir, metadata, cfg.TEST.SEMANTIC_FOLDER, cfg.TEST.PANOPTIC_FOLDER)


def evaluate(cfg, model, loader, metadata, device, output_dir=None):
    """Evaluate ``model`` (conventional or OM-wrapped) on ``loader`` (batch 1); returns the metrics dict (percent)
    and writes metrics.json, visualization panels and, with TEST.SAVE_PREDICTIONS, the predictions in the official
    formats (``evaluation/writers.py``, and the instance evaluator's files) into ``output_dir``."""
    check_test_config(cfg)
    model.eval()
    panoptic = cfg.MODEL.META_ARCHITECTURE == "panoptic_deeplab" and cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE
    panoptic = panoptic and cfg.TEST.EVAL_PANOPTIC
    decode = _decode_om if isinstance(model, OutputMathModel) else _decode_conventional
    instance_eval = _instance_evaluator(cfg, metadata, panoptic, output_dir)
    writer = _prediction_writer(cfg, metadata, output_dir)
    sem_eval = SemanticEvaluator(metadata.num_classes, metadata.ignore_label, list(metadata.class_names))
    pan_eval = PanopticEvaluator(metadata)
    vis_dir = os.path.join(output_dir, "vis") if output_dir and comm.is_main_process() else None
    if vis_dir:
        os.makedirs(vis_dir, exist_ok=True)
    total = len(loader)
    t_net = t_post = 0.0
    t_start = time.perf_counter()
    for i, batch in enumerate(loader):
        gt_pan = batch["panoptic"][0]
        sem_ids, pan, dt_net, dt_post, aux = decode(cfg, model, batch["image"].to(device), batch, metadata, panoptic,
                                                    instance_eval is not None)
        t_net, t_post = t_net + dt_net, t_post + dt_post
        sem_eval.update(sem_ids[0].cpu(), gt_pan // metadata.label_divisor)
        if panoptic:
            pan_eval.update(pan[0].cpu(), gt_pan)
        if writer is not None:
            writer.write(batch["file_name"][0], sem_ids[0], pan[0] if panoptic else None)
        if instance_eval is not None:
            instance_eval.update(batch["file_name"][0], instance_predictions(
                pan[0].cpu(), aux["semantic_prob"][0].cpu(), aux["center"][0, 0].cpu(), metadata,
                cfg.TEST.INSTANCE_SCORE_TYPE))
        _save_panel(cfg, vis_dir, i, batch, gt_pan, pan, metadata)
        _log_progress(i, total, t_net, t_post, t_start)
    # with several processes each saw its shard: sum the statistics
    comm.all_reduce_sum(sem_eval.conf)
    for array in (pan_eval.tp, pan_eval.fp, pan_eval.fn, pan_eval.iou):
        comm.all_reduce_sum(array)
    n_images = int(comm.all_reduce_sum(torch.tensor(total)))
    if writer is not None:
        annotations = [a for part in comm.all_gather_object(writer.annotations) for a in part]
        if comm.is_main_process():
            writer.finish(annotations)
    metrics = sem_eval.evaluate()
    if panoptic:
        metrics.update(pan_eval.evaluate())
    if instance_eval is not None:
        metrics.update(instance_eval.evaluate())
    metrics["time_network_s"] = t_net / max(total, 1)
    metrics["time_post_processing_s"] = t_post / max(total, 1)
    logger.info("Results on %s (%d images):\n%s", cfg.DATASET.TEST_SPLIT, n_images, format_metrics_table(metrics))
    if output_dir and comm.is_main_process():
        with open(os.path.join(output_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics
