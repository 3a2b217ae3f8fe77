"""Train a model: ``python tools/train_net.py --cfg FILE [KEY VALUE ...]``."""
from _common import parse_config

from segmentation.engine import Trainer
from segmentation.utils.logger import setup_logger


def main(argv=None):
    _, cfg = parse_config("Train Panoptic-DeepLab.", argv)
    logger = setup_logger(cfg.OUTPUT_DIR)
    logger.info("Config:\n%s", cfg.dump())
    Trainer(cfg).train()


if __name__ == "__main__":
    main()
