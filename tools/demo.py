"""Predict on images, folders or videos with only the weights and the dataset metadata (never the dataset).

    python tools/demo.py --cfg FILE --input PATH [PATH ...] --output DIR [--merge-image] [--dump NAME ...]
                         [--opts TEST.MODEL_FILE ckpt KEY VALUE ...]

For every image (or video frame ``<video>_<frame>``) it writes ``semantic/``, ``instance/`` and ``panoptic/`` PNGs
in the dataset's colours (``--merge-image`` blends them over the image), for a video also the videos
``<video>_<map>.mp4``, and with ``--dump NAME`` any output-mathematics variable by name into ``dump/NAME/``
(heatmaps with a colour map, offsets as flow colours, ids with the palette). It is the Python API's ``Predictor``
(segmentation/engine/predictor.py): decoding goes through the OM (``panoptic_pred``), so any variable of the
configured formulation can be dumped. The checkpoint is TEST.MODEL_FILE, else MODEL.WEIGHTS, else
OUTPUT_DIR/final_state.pth.
"""
import argparse
import glob
import os
import sys

import cv2
import numpy as np
from _common import parse_config, run

from segmentation.data.datasets import read_image
from segmentation.engine.predictor import Predictor
from segmentation.model.output_math.drawing import colorize_variable
from segmentation.model.output_math.graph import prediction_variables
from segmentation.utils.runtime import configure_runtime
from segmentation.utils.visualization import colorize_instances, colorize_panoptic, colorize_semantic

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpeg", ".mpg", ".webm")


def iter_inputs(paths):
    """Yield (name, RGB uint8 image, video) for image files, folders of images and video files (frame by frame;
    ``video`` = (file stem, frames per second) for frames, None for images)."""
    for path in paths:
        if os.path.isdir(path):
            files = sorted(f for f in glob.glob(os.path.join(path, "*")) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not files:
                raise FileNotFoundError(f"No image ({', '.join(IMAGE_EXTENSIONS)}) in folder '{path}'.")
            for f in files:
                yield os.path.splitext(os.path.basename(f))[0], read_image(f, upright=True), None
        elif path.lower().endswith(VIDEO_EXTENSIONS):
            capture = cv2.VideoCapture(path)
            if not capture.isOpened():
                raise FileNotFoundError(f"Video '{path}' cannot be opened.")
            stem, frame = os.path.splitext(os.path.basename(path))[0], 0
            fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield f"{stem}_{frame:06d}", bgr[..., ::-1].copy(), (stem, fps)
                frame += 1
            capture.release()
        elif os.path.isfile(path):
            yield os.path.splitext(os.path.basename(path))[0], read_image(path, upright=True), None
        else:
            raise FileNotFoundError(f"Input '{path}' is neither an image, a folder nor a video file.")


def _blend(rgb, image=None, alpha=0.5):
    return rgb if image is None else (alpha * rgb + (1 - alpha) * image).astype(np.uint8)


def _save(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, rgb[..., ::-1])


class VideoWriters:
    """One output video per input video: ``<output>/<stem>_<map>.mp4`` (mp4v) with the frames' colour maps."""

    def __init__(self, folder):
        self.folder, self.writers = folder, {}

    def write(self, video, kind, rgb):
        stem, fps = video
        key = (stem, kind)
        if key not in self.writers:
            os.makedirs(self.folder, exist_ok=True)
            path = os.path.join(self.folder, f"{stem}_{kind}.mp4")
            self.writers[key] = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                (rgb.shape[1], rgb.shape[0]))
            if not self.writers[key].isOpened():
                raise RuntimeError(f"OpenCV cannot write the video {path} (no mp4v encoder?).")
        self.writers[key].write(np.ascontiguousarray(rgb[..., ::-1]))

    def close(self):
        for writer in self.writers.values():
            writer.release()
        return [os.path.join(self.folder, f"{stem}_{kind}.mp4") for stem, kind in self.writers]


def main(argv=None):
    def extra(parser):
        parser.add_argument("--input", nargs="+", required=True, help="images, folders of images or video files")
        parser.add_argument("--output", required=True, help="output folder")
        parser.add_argument("--merge-image", action="store_true", help="blend the predictions over the image")
        parser.add_argument("--dump", nargs="*", default=[], metavar="NAME",
                            help="OM variables to save (computable without ground truth; a wrong name lists them)")
        parser.add_argument("--opts", dest="late_opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                            help="config overrides (last on the line: --input and --dump take several values)")
    args, _ = parse_config("Panoptic-DeepLab demo.", argv, extra)
    predictor = Predictor(args.cfg, opts=list(args.opts) + list(args.late_opts))
    configure_runtime(predictor.cfg, predictor.device)
    cfg, metadata = predictor.cfg, predictor.metadata
    om_class = predictor.model.om_class
    dumpable = prediction_variables(om_class)
    unknown = [name for name in args.dump if name not in dumpable]
    if unknown:
        raise ValueError(f"--dump {' '.join(unknown)}: not computable from an image alone (the demo has no ground "
                         f"truth) or not a variable of {om_class.__name__}. Variables it can dump: "
                         f"{', '.join(dumpable)}.")
    videos = VideoWriters(args.output)
    count = 0
    try:
        for name, image, video in iter_inputs(args.input):
            result = predictor(image, variables=args.dump)
            base = image if args.merge_image else None
            maps = {"semantic": _blend(colorize_semantic(result.semantic, metadata), base)}
            if predictor.panoptic:
                maps["panoptic"] = _blend(colorize_panoptic(result.panoptic, metadata), base)
                maps["instance"] = _blend(colorize_instances(result.instance), base)
            for kind, rgb in maps.items():
                _save(os.path.join(args.output, kind, f"{name}.png"), rgb)
                if video is not None:
                    videos.write(video, kind, rgb)
            for var in args.dump:
                _save(os.path.join(args.output, "dump", var, f"{name}.png"),
                      colorize_variable(var, result.variables[var], metadata, cfg))
            count += 1
    finally:
        written = videos.close()
    print(f"Wrote predictions for {count} image(s) to {args.output}"
          + (f", and the videos {', '.join(written)}." if written else "."))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
