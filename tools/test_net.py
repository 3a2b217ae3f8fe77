"""Evaluate a checkpoint: ``python tools/test_net.py --cfg FILE [TEST.MODEL_FILE ckpt] [KEY VALUE ...]``.

The checkpoint is TEST.MODEL_FILE, else MODEL.WEIGHTS, else OUTPUT_DIR/final_state.pth.
"""
import os

import torch
from _common import checkpoint_path_for_inference, parse_config

from segmentation.data import build_test_loader, get_metadata
from segmentation.engine import configure_host_memory, evaluate, resolve_device
from segmentation.model import build_model
from segmentation.utils.checkpoint import load_checkpoint, model_state
from segmentation.utils.logger import setup_logger


def main(argv=None):
    _, cfg = parse_config("Evaluate Panoptic-DeepLab.", argv)
    logger = setup_logger(cfg.OUTPUT_DIR, rank=int(os.environ.get("RANK", 0)))
    path = checkpoint_path_for_inference(cfg)
    from segmentation.utils import comm
    device = resolve_device(cfg)
    configure_host_memory(cfg, device)
    rank, world_size, local_rank = comm.init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    model = build_model(cfg)
    model.load_state_dict(model_state(load_checkpoint(path)))
    model.to(device)
    logger.info("Evaluating %s", path)
    loader = build_test_loader(cfg, rank, world_size)
    metadata = get_metadata(cfg)
    return evaluate(cfg, model, loader, metadata, device, output_dir=cfg.OUTPUT_DIR)


if __name__ == "__main__":
    main()
