"""Convert a checkpoint of the original Panoptic-DeepLab repository to this repository's format:
``python tools/convert_checkpoint.py IN OUT [--cfg FILE [KEY VALUE ...]]``.

IN is the original's ``final_state.pth`` (a bare state dict) or ``checkpoint.pth.tar`` (a dict with ``state_dict``);
OUT gets ``{"model": state dict}``, usable as MODEL.WEIGHTS or TEST.MODEL_FILE. Conversion is not needed to use an
original checkpoint (both keys convert on load); it makes the file independent of the rename tables. With ``--cfg``
the converted weights are also loaded strictly into the configured model (e.g. a copy of the original's config
under configs/cityscapes), which proves they fit it.
"""
import argparse
import logging
import sys

from _common import run

from segmentation.config import load_config
from segmentation.model.original_format import convert_original_state, is_original_state
from segmentation.utils.checkpoint import (
    load_checkpoint,
    load_model_weights,
    model_state,
    require_finite_weights,
    save_checkpoint,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert an original Panoptic-DeepLab checkpoint.")
    parser.add_argument("input", metavar="IN", help="the original's final_state.pth or checkpoint.pth.tar")
    parser.add_argument("output", metavar="OUT", help="file to write, in this repository's format")
    parser.add_argument("--cfg", metavar="FILE", help="config whose model the converted weights must fit")
    parser.add_argument("opts", nargs="*", help="config overrides as KEY VALUE pairs (with --cfg)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = model_state(load_checkpoint(args.input))
    if not isinstance(state, dict) or not is_original_state(state):
        raise ValueError(f"{args.input} is not in the original repository's format (it has no ASPP "
                         "'aspp_pooling' key); a checkpoint of this repository needs no conversion.")
    state, description = convert_original_state(state)
    require_finite_weights(state, args.input)
    if args.cfg:
        from segmentation.model import build_model
        cfg = load_config(args.cfg, ["MODEL.BACKBONE.PRETRAINED", "False", "MODEL.BACKBONE.WEIGHTS", "",
                                     "MODEL.WEIGHTS", "", *args.opts])
        load_model_weights(build_model(cfg), state, args.input, strict=True)
    save_checkpoint({"model": state}, args.output)
    print(f"Wrote {args.output}: {args.input} was in the {description}"
          f"{'; it fits ' + args.cfg if args.cfg else ''}.")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
