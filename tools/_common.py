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
