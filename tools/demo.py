"""Predict on images, folders or videos with only the weights and the dataset metadata (never the dataset).

    python tools/demo.py --cfg FILE --input PATH [PATH ...] --output DIR [--merge-image] [--dump NAME ...]
                         [--opts TEST.MODEL_FILE ckpt KEY VALUE ...]

For every image (or video frame ``<video>_<frame>``) it writes ``semantic/``, ``instance/`` and ``panoptic/`` PNGs in
the dataset's colours (``--merge-image`` blends them over the image), and with ``--dump NAME`` any output-mathematics
variable by name into ``dump/NAME/`` (heatmaps with a colour map, offsets as flow colours, ids with the palette).
Decoding goes through the OM (``panoptic_pred``) with its release policy, so any variable of the configured
formulation can be dumped. The checkpoint is TEST.MODEL_FILE, else MODEL.WEIGHTS, else OUTPUT_DIR/final_state.pth.
"""
import argparse
import glob
import os
import sys

import cv2
import numpy as np
import torch
from _common import build_inference_model, parse_config, run

from segmentation.config import merge_opts
from segmentation.data import get_metadata
from segmentation.data.datasets import read_image
from segmentation.data.transforms import normalize, to_tensor
from segmentation.engine import configure_host_memory, network_outputs, resolve_device
from segmentation.model.output_math import compose
from segmentation.model.output_math.graph import prediction_variables
from segmentation.model.output_math.wrapper import OutputMathModel
from segmentation.utils.visualization import (
    colorize_instances,
    colorize_panoptic,
    colorize_semantic,
    colorize_variable,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpeg", ".mpg", ".webm")


def iter_inputs(paths):
    """Yield (name, RGB uint8 image) for image files, folders of images and video files (frame by frame)."""
    for path in paths:
        if os.path.isdir(path):
            files = sorted(f for f in glob.glob(os.path.join(path, "*")) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not files:
                raise FileNotFoundError(f"No image ({', '.join(IMAGE_EXTENSIONS)}) in folder '{path}'.")
            for f in files:
                yield os.path.splitext(os.path.basename(f))[0], read_image(f)
        elif path.lower().endswith(VIDEO_EXTENSIONS):
            capture = cv2.VideoCapture(path)
            if not capture.isOpened():
                raise FileNotFoundError(f"Video '{path}' cannot be opened.")
            stem, frame = os.path.splitext(os.path.basename(path))[0], 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield f"{stem}_{frame:06d}", bgr[..., ::-1].copy()
                frame += 1
            capture.release()
        elif os.path.isfile(path):
            yield os.path.splitext(os.path.basename(path))[0], read_image(path)
        else:
            raise FileNotFoundError(f"Input '{path}' is neither an image, a folder nor a video file.")


def predict_om(cfg, model, image, device):
    """The OM instance of one RGB uint8 image (``model`` is an OutputMathModel in evaluation mode), with the
    test-time augmentation of TEST.FLIP_TEST / TEST.SCALE_LIST."""
    x = normalize(to_tensor(image), cfg.DATASET.MEAN, cfg.DATASET.STD)[None].to(device)
    return model.build(network_outputs(cfg, model.net, x), x)


def _save(path, rgb, image=None, alpha=0.5):
    if image is not None:
        rgb = (alpha * rgb + (1 - alpha) * image).astype(np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, rgb[..., ::-1])


def main(argv=None):
    def extra(parser):
        parser.add_argument("--input", nargs="+", required=True, help="images, folders of images or video files")
        parser.add_argument("--output", required=True, help="output folder")
        parser.add_argument("--merge-image", action="store_true", help="blend the predictions over the image")
        parser.add_argument("--dump", nargs="*", default=[], metavar="NAME",
                            help="OM variables to save (computable without ground truth; a wrong name lists them)")
        parser.add_argument("--opts", dest="late_opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                            help="config overrides (last on the line: --input and --dump take several values)")
    args, cfg = parse_config("Panoptic-DeepLab demo.", argv, extra)
    if args.late_opts:
        cfg.defrost()
        merge_opts(cfg, args.late_opts)
        cfg.freeze()
    device = resolve_device(cfg)
    configure_host_memory(cfg, device)
    metadata = get_metadata(cfg)
    model, _ = build_inference_model(cfg)
    if not isinstance(model, OutputMathModel):  # the conventional network, read through the base formulation
        model = OutputMathModel(model, compose("panoptic-deeplab"), cfg, metadata)
    dumpable = prediction_variables(model.om_class)
    unknown = [name for name in args.dump if name not in dumpable]
    if unknown:
        raise ValueError(f"--dump {' '.join(unknown)}: not computable from an image alone (the demo has no ground "
                         f"truth) or not a variable of {model.om_class.__name__}. Variables it can dump: "
                         f"{', '.join(dumpable)}.")
    model.to(device).eval()
    panoptic = cfg.MODEL.META_ARCHITECTURE == "panoptic_deeplab" and cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE
    count = 0
    for name, image in iter_inputs(args.input):
        om = predict_om(cfg, model, image, device)
        wanted = ["semantic_pred"] + (["panoptic_pred", "instance_pred"] if panoptic else []) + list(args.dump)
        with torch.no_grad():
            values = dict(zip(wanted, om.request(*wanted)))
        base = image if args.merge_image else None
        _save(os.path.join(args.output, "semantic", f"{name}.png"),
              colorize_semantic(values["semantic_pred"][0].cpu().numpy(), metadata), base)
        if panoptic:
            _save(os.path.join(args.output, "panoptic", f"{name}.png"),
                  colorize_panoptic(values["panoptic_pred"][0].cpu().numpy(), metadata), base)
            _save(os.path.join(args.output, "instance", f"{name}.png"),
                  colorize_instances(values["instance_pred"][0].cpu().numpy()), base)
        for var in args.dump:
            _save(os.path.join(args.output, "dump", var, f"{name}.png"),
                  colorize_variable(var, values[var], metadata, cfg))
        count += 1
    print(f"Wrote predictions for {count} image(s) to {args.output}.")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
