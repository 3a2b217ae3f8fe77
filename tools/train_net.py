"""Train a model: ``python tools/train_net.py --cfg FILE [KEY VALUE ...]``.

Several processes: ``torchrun --nproc_per_node N [--nnodes M ...] tools/train_net.py --cfg FILE`` (NCCL on GPUs, gloo
on CPUs; TRAIN.IMS_PER_BATCH stays the global batch).
"""
import os

from _common import parse_config

from segmentation.engine import Trainer
from segmentation.utils.logger import setup_logger


def main(argv=None):
    _, cfg = parse_config("Train Panoptic-DeepLab.", argv)
    logger = setup_logger(cfg.OUTPUT_DIR, rank=int(os.environ.get("RANK", 0)))
    logger.info("Config:\n%s", cfg.dump())
    Trainer(cfg).train()


if __name__ == "__main__":
    main()
