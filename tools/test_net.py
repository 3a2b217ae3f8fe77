"""Evaluate a checkpoint: ``python tools/test_net.py --cfg FILE [--debug] [TEST.MODEL_FILE ckpt] [KEY VALUE ...]``.

The checkpoint is TEST.MODEL_FILE, else MODEL.WEIGHTS, else OUTPUT_DIR/final_state.pth. Weights with NaN or infinite
values are refused; a checkpoint of an unfinished run is evaluated with a warning. Results (metrics.json, vis/,
the prediction files of TEST.SAVE_PREDICTIONS, config.yaml) go to their own folder,
OUTPUT_DIR/eval/<split>-<checkpoint>-<hash of the test-time config>, printed at the end.
"""
import os
import sys

import torch
from _common import build_inference_model, log_config, parse_config, run

from segmentation.config import dump_config
from segmentation.data import build_test_loader, get_metadata
from segmentation.engine import configure_runtime, evaluate, resolve_device
from segmentation.engine.evaluator import evaluation_dir
from segmentation.utils.logger import setup_logger


def main(argv=None):
    args, cfg = parse_config("Evaluate Panoptic-DeepLab.", argv)
    logger = setup_logger(cfg.OUTPUT_DIR, rank=int(os.environ.get("RANK", 0)))
    log_config(logger, args, cfg)
    from segmentation.utils import comm
    device = resolve_device(cfg)
    configure_runtime(cfg, device)
    rank, world_size, local_rank = comm.init_distributed(device.type, cfg.DIST_TIMEOUT)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    model, path = build_inference_model(cfg, logger)
    model.to(device)
    logger.info("Evaluating %s", path)
    loader = build_test_loader(cfg, rank, world_size)
    metadata = get_metadata(cfg)
    out = evaluation_dir(cfg, path)
    if comm.is_main_process():
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.yaml"), "w") as f:
            f.write(dump_config(cfg))
    evaluate(cfg, model, loader, metadata, device, output_dir=out)
    logger.info("Evaluation of %s written to %s", path, out)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
