"""Export the network with its decoding: ``python tools/export.py --cfg FILE --format onnx|torchscript
[--size H W] [--output PATH] [TEST.MODEL_FILE ckpt] [KEY VALUE ...]``.

The exported module takes a normalised image [1, 3, H, W] (DATASET.MEAN / STD) and returns the panoptic map and the
semantic map [1, H, W] (train ids; panoptic ids = class * DATASET.LABEL_DIVISOR + instance), decoded with the
static-shape functions of ``segmentation/model/post_processing/static.py`` and POST_PROCESSING.*: deployment needs
neither this repository's OM nor Python. The input size is fixed at export (--size, default TEST.CROP_SIZE). After
writing, the tool runs the exported file (onnxruntime for ONNX, if installed) on a test input and reports whether
its panoptic map equals the eager decoding's.
"""
import os
import sys
import warnings

import torch
from _common import build_inference_model, parse_config, run

from segmentation.data import get_metadata
from segmentation.model.export import EXPORT_FORMATS, PanopticExportModel, export_model
from segmentation.model.output_math.wrapper import OutputMathModel


def run_exported(path, fmt, image):
    """(panoptic, semantic) numpy arrays of the exported file on ``image``; None for ONNX without onnxruntime."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=DeprecationWarning)
            module = torch.jit.load(path)
        return tuple(t.numpy() for t in module(image))
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return tuple(session.run(None, {"image": image.numpy()}))


def refuse_decoding_mixins(cfg):
    """The exported decoding reads the raw network outputs: an OM mixin that changes a prediction variable (e.g.
    focal-centers' sigmoid heatmap, the oracles) would be silently dropped, so it is an error."""
    if not cfg.OM.NAME:
        return
    from segmentation.model.output_math import build_output_math_class
    changed = {part.OM_NAME: sorted(n for n in vars(part) if n.endswith("_pred"))
               for part in build_output_math_class(cfg).__mro__ if getattr(part, "OM_KIND", None) == "mixin"}
    changed = {name: names for name, names in changed.items() if names}
    if changed:
        what = "; ".join(f"'{name}' changes {', '.join(names)}" for name, names in changed.items())
        raise ValueError(f"OM.MIXINS change the decoding ({what}), which the exported model (static decoding of the "
                         f"raw network outputs) does not reproduce; export a config without them, or decode through "
                         f"the OM (tools/demo.py, segmentation.Predictor).")


def main(argv=None):
    def extra(parser):
        parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
        parser.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), help="input size (TEST.CROP_SIZE)")
        parser.add_argument("--output", help="file to write (OUTPUT_DIR/panoptic_deeplab.{pt,onnx})")
    args, cfg = parse_config("Export Panoptic-DeepLab with its decoding.", argv, extra)
    if cfg.MODEL.META_ARCHITECTURE != "panoptic_deeplab" or not cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE:
        raise ValueError("Export needs MODEL.META_ARCHITECTURE panoptic_deeplab with "
                         "MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE True.")
    refuse_decoding_mixins(cfg)
    if cfg.MODEL.COMPILE:  # the exporters trace the eager network
        cfg.defrost()
        cfg.MODEL.COMPILE = False
        cfg.freeze()
    net, _ = build_inference_model(cfg)
    if isinstance(net, OutputMathModel):  # the OM is a training-time view: export the network itself
        net = net.net
    model = PanopticExportModel(net, get_metadata(cfg), cfg.POST_PROCESSING).eval()
    height, width = args.size or cfg.TEST.CROP_SIZE
    output = args.output or os.path.join(cfg.OUTPUT_DIR, "panoptic_deeplab." + ("pt" if args.format ==
                                                                                 "torchscript" else "onnx"))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    export_model(model, image, output, args.format)
    with torch.no_grad():
        eager = model(image)[0].numpy()
    exported = run_exported(output, args.format, image)
    if exported is None:
        print(f"Wrote {output} ({height}x{width} input); onnxruntime is not installed, so it was not run.")
    else:
        same = bool((exported[0] == eager).all())
        print(f"Wrote {output} ({height}x{width} input); on a test input its panoptic map "
              f"{'equals' if same else 'DIFFERS from'} the eager decoding's.")
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
