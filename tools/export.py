"""Export the network with its decoding: ``python tools/export.py --cfg FILE --format onnx|torchscript
[--size H W] [--output PATH] [--outputs panoptic|network|all] [TEST.MODEL_FILE ckpt] [KEY VALUE ...]``.

The exported module takes a normalised image [1, 3, H, W] (DATASET.MEAN / STD) and returns the panoptic map and the
semantic map [1, H, W] (train ids; panoptic ids = class * DATASET.LABEL_DIVISOR + instance), decoded with the
static-shape functions of ``segmentation/model/post_processing/static.py`` and POST_PROCESSING.*: deployment needs
neither this repository's OM nor Python. ``--outputs network`` exports the network alone (semantic logits, centre
heatmap, offsets), for a runtime that should run only the network (TensorRT) and a decoding elsewhere; ``all``
returns both. The input size is fixed at export (--size, default TEST.CROP_SIZE). After writing, the tool runs the
exported file (onnxruntime for ONNX, if installed) on a test input and compares it with the eager model: TorchScript
equal bit for bit; onnxruntime rounds the network differently from torch, so its network outputs must be close to
torch's and, where that rounding tips a near-tie of the decoding, its decoding exact on its own network outputs
(``check_exported``). Exit status 1 when the export does not reproduce the model.
"""
import os
import sys
import tempfile
import warnings

import torch
from _common import build_inference_model, parse_config, run

from segmentation.data import get_metadata
from segmentation.model.export import EXPORT_FORMATS, EXPORT_OUTPUTS, NETWORK_OUTPUTS, PanopticExportModel, export_model
from segmentation.model.output_math.wrapper import OutputMathModel

# Largest difference between onnxruntime's network outputs and torch's, relative to each output's largest magnitude,
# taken as rounding (float32 convolutions summed in another order differ by ~1e-6 of the range)
RUNTIME_TOLERANCE = 1e-4


def run_exported(path, fmt, image):
    """The exported file's outputs on ``image`` as numpy arrays, in the order of its EXPORT_OUTPUTS entry; None for
    ONNX without onnxruntime."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=DeprecationWarning)
            module = torch.jit.load(path)
        with torch.no_grad():
            return tuple(t.numpy() for t in module(image))
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return tuple(session.run(None, {"image": image.numpy()}))


def _network_gap(got, eager):
    """Largest difference between two sets of network outputs, relative to each eager output's largest magnitude."""
    return max(float((got[n] - eager[n]).abs().max() / eager[n].abs().max().clamp(min=1e-12)) for n in NETWORK_OUTPUTS)


def _close(got, eager, who):
    """(ok, note): are ``who``'s network outputs within RUNTIME_TOLERANCE of torch's?"""
    gap = _network_gap(got, eager)
    return gap <= RUNTIME_TOLERANCE, (f"{who} network outputs differ from torch's by at most {gap:.1e} of their range "
                                      f"(allowed: {RUNTIME_TOLERANCE:.0e})")


def check_exported(model, path, fmt, image):
    """(ok, message): does the exported file at ``path`` reproduce ``model`` on ``image``? ok is None when it could
    not be run (ONNX without onnxruntime).

    TorchScript runs torch's kernels, so every output must equal the eager one. onnxruntime computes the network
    with its own rounding: its network outputs must be within ``RUNTIME_TOLERANCE`` of torch's (relative to the
    largest magnitude of each), and where that rounding tips a near-tie of the decoding (two centre peaks, two
    classes) so that its panoptic map differs, its decoding must equal the exported decoding of its own network
    outputs (read from a copy exported with ``outputs="all"`` when the file does not return them).
    """
    exported = run_exported(path, fmt, image)
    if exported is None:
        return None, "onnxruntime is not installed, so it was not run"
    with torch.no_grad():
        eager = dict(zip(model.output_names, model(image)))
    got = dict(zip(model.output_names, (torch.from_numpy(a) for a in exported)))
    ok, notes = True, []
    if "semantic_logits" in got:
        if fmt == "torchscript":
            same = all(torch.equal(got[n], eager[n]) for n in NETWORK_OUTPUTS)
            ok, notes = same, [f"its network outputs {'equal' if same else 'DIFFER from'} torch's"]
        else:
            ok, note = _close(got, eager, "its")
            notes.append(note)
    if "panoptic" in got:
        differ = int((got["panoptic"] != eager["panoptic"]).sum())
        if not differ:
            return ok, "on a test input " + "; ".join(notes + ["its panoptic map equals the eager decoding's"])
        notes.append(f"its panoptic map DIFFERS from the eager decoding's on {differ} of {got['panoptic'].numel()} "
                     f"pixels")
        if fmt != "onnx":
            return False, "on a test input " + "; ".join(notes)
        if "semantic_logits" not in got:  # run a copy that also returns the network outputs
            outputs, model.outputs = model.outputs, "all"
            try:
                with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
                    copy = export_model(model, image, os.path.join(tmp, "all_outputs.onnx"), fmt)
                    got = dict(zip(model.output_names, (torch.from_numpy(a) for a in run_exported(copy, fmt, image))))
                    eager = dict(zip(model.output_names, model(image)))
            finally:
                model.outputs = outputs
            ok, note = _close(got, eager, "onnxruntime's")
            notes.append(note)
        exact = torch.equal(model.decode(got["semantic_logits"][0], got["center"][0, 0], got["offset"][0]),
                            got["panoptic"][0])
        notes.append("the exported decoding of onnxruntime's own network outputs is " + ("exact" if exact else
                                                                                           "NOT exact"))
        ok = ok and exact
    return ok, "on a test input " + "; ".join(notes)


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
        parser.add_argument("--outputs", choices=EXPORT_OUTPUTS, default="panoptic", help="panoptic: the decoded "
                            "panoptic and semantic maps; network: the network's outputs alone (semantic logits, "
                            "centre heatmap, offsets), to decode elsewhere; all: both")
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
    model = PanopticExportModel(net, get_metadata(cfg), cfg.POST_PROCESSING, args.outputs).eval()
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
