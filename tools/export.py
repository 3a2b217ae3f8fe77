"""Export the network with its decoding: ``python tools/export.py --cfg FILE --format onnx|torchscript
[--size H W] [--output PATH] [TEST.MODEL_FILE ckpt] [KEY VALUE ...]``.

The exported module takes a normalised image [1, 3, H, W] (DATASET.MEAN / STD) and returns the panoptic map and the
semantic map [1, H, W] (train ids; panoptic ids = class * DATASET.LABEL_DIVISOR + instance), decoded with the
static-shape functions of ``segmentation/model/post_processing/static.py`` and POST_PROCESSING.*: deployment needs
neither this repository's OM nor Python. The input size is fixed at export (--size, default TEST.CROP_SIZE). After
writing, the tool runs the exported file (onnxruntime for ONNX, if installed) on a test input and reports whether
its panoptic map equals the eager decoding's; where onnxruntime's rounding tips a near-tie, it checks instead that
the exported decoding is exact on onnxruntime's own network outputs and that these are close to torch's
(``check_exported``). Exit status 1 when the export does not reproduce the decoding.
"""
import os
import sys
import tempfile
import warnings

import torch
from _common import build_inference_model, parse_config, run

from segmentation.data import get_metadata
from segmentation.model.export import EXPORT_FORMATS, PanopticExportModel, export_model
from segmentation.model.output_math.wrapper import OutputMathModel

# Largest difference between onnxruntime's network outputs and torch's, relative to each output's largest magnitude,
# taken as rounding (float32 convolutions summed in another order differ by ~1e-6 of the range)
RUNTIME_TOLERANCE = 1e-4


def run_exported(path, fmt, image):
    """The exported file's outputs on ``image`` as numpy arrays: (panoptic, semantic), then the network outputs of a
    model exported with ``raw_outputs``; None for ONNX without onnxruntime."""
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


def check_exported(model, path, fmt, image):
    """(ok, message): does the exported file at ``path`` reproduce ``model``'s eager decoding on ``image``? ok is
    None when it could not be run (ONNX without onnxruntime).

    TorchScript runs torch's kernels, so its panoptic map must equal the eager one. onnxruntime computes the network
    with its own rounding, which can tip a near-tie (two centre peaks, two classes) the other way; when its map
    differs, a copy of the export that also returns the network outputs is run: its decoding must equal the exported
    decoding of those very outputs, and they must be within ``RUNTIME_TOLERANCE`` of torch's (relative to the
    largest magnitude of each).
    """
    exported = run_exported(path, fmt, image)
    if exported is None:
        return None, "onnxruntime is not installed, so it was not run"
    with torch.no_grad():
        eager = model(image)
    differ = int((torch.from_numpy(exported[0]) != eager[0]).sum())
    if not differ:
        return True, "on a test input its panoptic map equals the eager decoding's"
    message = (f"on a test input its panoptic map DIFFERS from the eager decoding's on {differ} of "
               f"{eager[0].numel()} pixels")
    if fmt != "onnx":
        return False, message
    model.raw_outputs = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            raw_path = export_model(model, image, os.path.join(tmp, "raw_outputs.onnx"), fmt)
            panoptic, _, *raw = (torch.from_numpy(a) for a in run_exported(raw_path, fmt, image))
        with torch.no_grad():
            torch_raw = model(image)[2:]
    finally:
        model.raw_outputs = False
    exact = torch.equal(model.decode(raw[0][0], raw[1][0, 0], raw[2][0]), panoptic[0])
    gap = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-12)) for a, b in zip(raw, torch_raw))
    message += (f"; onnxruntime's network outputs differ from torch's by up to {gap:.1e} of their range, and the "
                f"exported decoding of its own outputs is {'exact' if exact else 'NOT exact'}")
    return exact and gap <= RUNTIME_TOLERANCE, message


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
    ok, message = check_exported(model, output, args.format, image)
    print(f"Wrote {output} ({height}x{width} input); {message}.")
    return 1 if ok is False else 0


if __name__ == "__main__":
    sys.exit(run(main))
