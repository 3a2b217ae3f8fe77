"""Logging to the console and OUTPUT_DIR/log.txt."""
import logging
import os
import sys


def setup_logger(output_dir=None, name="segmentation", rank=0):
    """INFO and above on the console (rank 0 only); everything, DEBUG included (the resolved config, tracebacks),
    in OUTPUT_DIR/log.txt."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    if rank == 0:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(fmt)
        console.setLevel(logging.INFO)
        logger.addHandler(console)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, "log.txt" if rank == 0 else f"log.txt.rank{rank}"))
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


def format_seconds(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
