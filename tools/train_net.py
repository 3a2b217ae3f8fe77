"""Train a model: ``python tools/train_net.py --cfg FILE [--debug] [KEY VALUE ...]``.

Several processes: ``torchrun --nproc_per_node N [--nnodes M ...] tools/train_net.py --cfg FILE`` (NCCL on GPUs, gloo
on CPUs; TRAIN.IMS_PER_BATCH stays the global batch).

Exit status: 0 when the last iteration is done (``final_state.pth`` written); 1 on an error (one ``error:`` line,
the traceback in OUTPUT_DIR/log.txt); 130 / 143 after SIGINT / SIGTERM, once the iteration in progress is saved
(resume with ``TRAIN.RESUME True``).
"""
import os
import sys

from _common import log_config, parse_config, run

from segmentation.engine import Trainer
from segmentation.utils.logger import setup_logger


def main(argv=None):
    args, cfg = parse_config("Train Panoptic-DeepLab.", argv)
    logger = setup_logger(cfg.OUTPUT_DIR, rank=int(os.environ.get("RANK", 0)))
    log_config(logger, args, cfg)
    Trainer(cfg).train()
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
