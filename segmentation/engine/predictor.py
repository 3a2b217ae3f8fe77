"""Inference from a config and a checkpoint: the model built once for every tool, and ``Predictor``, the Python API.

    from segmentation import Predictor
    predictor = Predictor("configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml", "output/synthetic/final_state.pth")
    result = predictor("image.png")        # or an RGB uint8 array [H, W, 3], or a list of them
    result.panoptic, result.segments_info  # also result.semantic, result.instance

Decoding goes through the output mathematics (the configured formulation, or the base one for a conventional
model), with the test-time augmentation of TEST.FLIP_TEST / TEST.SCALE_LIST.
"""
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import yaml

from ..config import load_config
from ..data import get_metadata
from ..data.datasets import read_image
from ..data.transforms import normalize, to_tensor
from ..model import build_model, compile_network
from ..model.original_format import model_state_dict
from ..model.output_math import formulation_mismatch
from ..model.output_math.wrapper import output_math_view
from ..utils.checkpoint import load_checkpoint, load_model_weights, require_finite_weights
from ..utils.runtime import (
    CHECKPOINT_NAME,
    FINAL_NAME,
    configure_backends,
    describe_run,
    read_run_record,
    resolve_device,
)
from .inference import network_outputs

logger = logging.getLogger("segmentation")


def checkpoint_path_for_inference(cfg) -> str:
    """The checkpoint to run (TEST.MODEL_FILE, else MODEL.WEIGHTS, else OUTPUT_DIR/final_state.pth), raising
    FileNotFoundError (saying how the run ended, if it did not finish) if it does not exist; ``cfg`` is changed so
    that building the model loads no other weights."""
    path = cfg.TEST.MODEL_FILE or cfg.MODEL.WEIGHTS or os.path.join(cfg.OUTPUT_DIR, FINAL_NAME)
    if not os.path.isfile(path):
        hint = "train first or set TEST.MODEL_FILE"
        record = read_run_record(os.path.dirname(path) or ".")
        if record and record.get("status") not in (None, "finished"):
            hint = (f"the run in {os.path.dirname(path)} is {describe_run(record)}: resume it with TRAIN.RESUME "
                    f"True, or evaluate its last checkpoint with TEST.MODEL_FILE "
                    f"{os.path.join(os.path.dirname(path), CHECKPOINT_NAME)}")
        raise FileNotFoundError(f"Checkpoint '{path}' does not exist; {hint}.")
    cfg.defrost()
    cfg.MODEL.WEIGHTS, cfg.MODEL.BACKBONE.PRETRAINED, cfg.MODEL.BACKBONE.WEIGHTS = "", False, ""
    cfg.freeze()
    return path


def warn_formulation_mismatch(checkpoint, cfg, path, log):
    """Warn when the OM formulation of ``cfg`` reads the network outputs otherwise than the one the checkpoint was
    trained with (recorded in its config: final_state.pth, best.pth and checkpoint.pth.tar hold it): e.g. a
    focal-centers model evaluated with the base config would have its centre logits thresholded as a heatmap."""
    saved = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    if not isinstance(saved, str):
        return
    om = (yaml.safe_load(saved) or {}).get("OM", {})
    trained = (om.get("NAME") or om.get("BASE") or "", tuple(om.get("MIXINS") or ()))
    for line in formulation_mismatch(trained, (cfg.OM.NAME, tuple(cfg.OM.MIXINS))):
        log.warning("%s: %s (OM.MIXINS %s when trained); the metrics would not be those of the trained model. "
                    "Evaluate with the training run's config.yaml, or set OM.NAME / OM.MIXINS as trained.", path,
                    line, list(trained[1]))


def build_inference_model(cfg, log: logging.Logger | None = None) -> tuple[torch.nn.Module, str]:
    """(model with the weights of the checkpoint of ``checkpoint_path_for_inference``, that path), on the CPU.
    Loads strictly (an original-repository checkpoint is converted), refuses weights with NaN or infinite values,
    warns when the checkpoint comes from a run that did not finish."""
    log = log or logger
    path = checkpoint_path_for_inference(cfg)
    checkpoint = load_checkpoint(path)
    state = require_finite_weights(model_state_dict(checkpoint, path), path)
    warn_formulation_mismatch(checkpoint, cfg, path, log)
    record = read_run_record(os.path.dirname(os.path.abspath(path)))
    if record and record.get("status") not in (None, "finished"):
        log.warning("%s comes from a run that did not finish (%s): these are not the final weights.", path,
                    describe_run(record))
    model = build_model(cfg)
    load_model_weights(model, state, path, strict=True)
    return compile_network(cfg, model), path


@dataclass
class Prediction:
    """The maps of one image, at its size (numpy, on the CPU)."""

    semantic: np.ndarray  # [H, W] int64 class (train id) of every pixel
    panoptic: np.ndarray | None = None  # [H, W] int64 class * label_divisor + instance (void: the void label)
    instance: np.ndarray | None = None  # [H, W] int64 instance number, 0 where no thing instance
    segments_info: list = field(default_factory=list)  # one dict per panoptic segment (see segments_info)
    variables: dict = field(default_factory=dict)  # the extra OM variables asked for, as tensors


def segments_info(panoptic: np.ndarray, metadata) -> list[dict]:
    """One dict per segment of a panoptic map [H, W]: id, category_id (train id), category (name), isthing, area
    (pixels) and bbox [x, y, width, height]; the void label is left out."""
    ids, inverse, areas = np.unique(panoptic, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    ys, xs = np.indices(panoptic.shape).reshape(2, -1)
    box = np.stack([np.full(len(ids), panoptic.shape[1]), np.full(len(ids), panoptic.shape[0]),
                    np.full(len(ids), -1), np.full(len(ids), -1)])
    np.minimum.at(box[0], inverse, xs)
    np.minimum.at(box[1], inverse, ys)
    np.maximum.at(box[2], inverse, xs)
    np.maximum.at(box[3], inverse, ys)
    infos = []
    for k, segment in enumerate(ids.tolist()):
        if segment == metadata.void_label:
            continue
        category = segment // metadata.label_divisor
        x0, y0, x1, y1 = box[:, k].tolist()
        infos.append({"id": segment, "category_id": category, "category": metadata.class_names[category],
                      "isthing": category in metadata.thing_ids, "area": int(areas[k]),
                      "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1]})
    return infos


class Predictor:
    """A trained model ready for images: ``Predictor(config_file, weights=None, opts=(), device=None)``.

    ``config_file``: a YAML file or the name of a shipped config; ``weights``: the checkpoint (default: the
    config's TEST.MODEL_FILE, MODEL.WEIGHTS, then OUTPUT_DIR/final_state.pth; original-repository checkpoints
    work too); ``opts``: KEY VALUE overrides (e.g. ``("TEST.FLIP_TEST", "True")``); ``device``: "cpu", "cuda" or
    None for the config's DEVICE. Calling it on an image (a path or an RGB uint8 array [H, W, 3]) returns a
    Prediction, on a list returns a list; ``variables=("center_pred", ...)`` adds OM variables to the result. A file
    is read upright (turned as its EXIF orientation tag says, the frame image viewers show).
    """

    def __init__(self, config_file: str, weights: str | None = None, opts: Sequence[str] = (),
                 device: str | None = None):
        opts = list(opts) + (["TEST.MODEL_FILE", str(weights)] if weights else [])
        opts += ["DEVICE", device] if device else []
        self.cfg = load_config(config_file, opts)
        self.metadata = get_metadata(self.cfg)
        self.device = resolve_device(self.cfg)
        configure_backends(self.cfg)
        model, self.checkpoint = build_inference_model(self.cfg)
        self.model = output_math_view(model, self.cfg, self.metadata).to(self.device).eval()
        m = self.cfg.MODEL
        self.panoptic = m.META_ARCHITECTURE == "panoptic_deeplab" and m.PANOPTIC_DEEPLAB.INSTANCE.ENABLE

    def output_math(self, image: str | os.PathLike | np.ndarray):
        """The OM instance of one image (a path or an RGB uint8 array), for any variable by name."""
        rgb = read_image(image, upright=True) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"Expected an RGB uint8 image [H, W, 3], got {rgb.dtype} {list(rgb.shape)}.")
        x = normalize(to_tensor(rgb), self.cfg.DATASET.MEAN, self.cfg.DATASET.STD)[None].to(self.device)
        with torch.no_grad():
            return self.model.build(network_outputs(self.cfg, self.model.net, x), x)

    def __call__(self, image, variables: Sequence[str] = ()) -> Prediction | list[Prediction]:
        if isinstance(image, (list, tuple)):
            return [self(one, variables) for one in image]
        om = self.output_math(image)
        names = ["semantic_pred"] + (["panoptic_pred", "instance_pred"] if self.panoptic else []) + list(variables)
        with torch.no_grad():
            values = dict(zip(names, om.request(*names)))
        result = Prediction(semantic=values["semantic_pred"][0].cpu().numpy(),
                            variables={name: values[name] for name in variables})
        if self.panoptic:
            result.panoptic = values["panoptic_pred"][0].cpu().numpy()
            result.instance = values["instance_pred"][0].cpu().numpy()
            result.segments_info = segments_info(result.panoptic, self.metadata)
        return result
