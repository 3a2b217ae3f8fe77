"""Shared command-line handling of the tools: ``--cfg FILE`` (or ``--config-file``) then ``KEY VALUE`` overrides."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segmentation.config import ConfigError, load_config  # noqa: E402


def parse_config(description, argv=None, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", "--config-file", dest="cfg", required=True, metavar="FILE", help="YAML config")
    if extra:
        extra(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.cfg, args.opts)
    except ConfigError as e:
        parser.exit(2, f"error: {e}\n")
    return args, cfg


def checkpoint_path_for_inference(cfg):
    """The checkpoint to run (TEST.MODEL_FILE, else MODEL.WEIGHTS, else OUTPUT_DIR/final_state.pth), exiting with an
    error if it does not exist; ``cfg`` is changed so that building the model loads no other weights."""
    from segmentation.engine.trainer import FINAL_NAME
    path = cfg.TEST.MODEL_FILE or cfg.MODEL.WEIGHTS or os.path.join(cfg.OUTPUT_DIR, FINAL_NAME)
    if not os.path.isfile(path):
        raise SystemExit(f"error: checkpoint '{path}' does not exist; train first or set TEST.MODEL_FILE.")
    cfg.defrost()
    cfg.MODEL.WEIGHTS, cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = "", False, ""
    cfg.freeze()
    return path


def median_time(fn, repeat, warmup=True):
    """Median wall time of ``repeat`` calls of ``fn`` (after one untimed call when ``warmup``)."""
    import statistics
    import time
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
