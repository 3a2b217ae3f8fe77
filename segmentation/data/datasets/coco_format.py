"""Datasets stored in the COCO panoptic format: a JSON file (images, annotations with segments_info, categories) and
one RGB-encoded PNG per image (segment id = R + 256 G + 256^2 B, 0 = void).

``cityscapes_panoptic`` (the files of cityscapesscripts' ``createPanopticImgs --use-train-id``), ``coco_panoptic``
(COCO 2017) and ``coco_panoptic_format`` (any dataset in this format, the custom-dataset path) share this loader.
"""
import json
import os

import cv2
import numpy as np

from ..metadata import DatasetMetadata
from .base import DatasetError, PanopticDataset, read_image, register_dataset, require_dir


def rgb2id(rgb):
    """Segment ids [H, W] (int32) from a COCO-panoptic colour-encoded array [H, W, 3]."""
    rgb = np.asarray(rgb).astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def metadata_from_categories(name, categories, label_divisor=1000, ignore_label=255):
    """DatasetMetadata with contiguous train ids: things first, each group in increasing category id.

    Returns (metadata, {category id: train id}).
    """
    ordered = sorted(categories, key=lambda c: (not c.get("isthing", 0), c["id"]))
    if len(ordered) >= ignore_label:
        raise ValueError(f"{name}: {len(ordered)} categories do not fit below the ignore label {ignore_label}.")
    mapping = {c["id"]: i for i, c in enumerate(ordered)}
    rng = np.random.default_rng(0)
    colors = tuple(tuple(int(v) for v in c["color"]) if "color" in c else tuple(int(v) for v in rng.integers(0, 256, 3))
                   for c in ordered)
    meta = DatasetMetadata(
        name=name, class_names=tuple(c.get("name", str(c["id"])) for c in ordered),
        thing_ids=tuple(i for i, c in enumerate(ordered) if c.get("isthing", 0)), colors=colors,
        label_divisor=label_divisor, ignore_label=ignore_label, eval_ids=tuple(c["id"] for c in ordered))
    return meta, mapping


def read_json(path, config_key="DATASET.ROOT"):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Annotation file '{path}' does not exist; check {config_key} (datasets/README.md "
                                f"shows the expected layout).")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DatasetError(f"Annotation file '{path}' is not valid JSON ({e}).") from None


def resize_to_range(image, label, min_size, max_size, factor):
    """The original COCO pre-augmentation resize: shorter side to ``min_size`` unless the longer side would exceed
    ``max_size``; sizes then rounded up to ``factor * k + 1``. Image bilinear, label nearest. -1 disables a bound."""
    h, w = label.shape
    scale = min_size / min(h, w) if min_size > 0 else 1.0
    if max_size > 0 and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    nh, nw = int(round(h * scale)), int(round(w * scale))
    if factor > 0:
        nh, nw = [(s - 1 + factor - 1) // factor * factor + 1 for s in (nh, nw)]
    if (nh, nw) == (h, w):
        return image, label
    return (cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST))


class CocoPanopticFormat(PanopticDataset):
    """A dataset given by its JSON file, PNG folder and image folder (``image_path(image_entry)`` may be overridden).

    ``metadata`` is built from the JSON categories (contiguous train ids, things first) unless the subclass fixes it;
    ``category_map`` maps the JSON's category ids to train ids.
    """

    LABEL_DIVISOR = 1000

    def __init__(self, split, json_file, png_dir, image_dir, metadata=None, category_map=None, resize=None, **kw):
        super().__init__(split=split, **kw)
        self.json_file, self.png_dir, self.image_dir = json_file, png_dir, image_dir
        data = read_json(json_file)
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise DatasetError(f"Annotation file '{json_file}' has no '{key}' list (COCO panoptic format).")
        require_dir(png_dir, "Panoptic PNG")
        require_dir(image_dir, "Image")
        if metadata is None:
            metadata, category_map = metadata_from_categories(type(self).__name__, data["categories"],
                                                              self.LABEL_DIVISOR)
        self.metadata = metadata
        self.category_map = category_map if category_map is not None else {c["id"]: c["id"] for c in
                                                                         data["categories"]}
        images = {img["id"]: img for img in data["images"]}
        self.entries = []
        for ann in sorted(data["annotations"], key=lambda a: str(a["image_id"])):
            if ann["image_id"] not in images:
                raise DatasetError(f"{json_file}: annotation '{ann.get('file_name')}' names image id "
                                   f"{ann['image_id']!r}, which is not in 'images'.")
            self.entries.append((images[ann["image_id"]], ann))
        self.resize = resize  # (min, max, factor) of the pre-augmentation resize, or None

    def image_path(self, image):
        return os.path.join(self.image_dir, image["file_name"])

    def annotation_path(self, ann):
        return os.path.join(self.png_dir, ann["file_name"])

    def __len__(self):
        return len(self.entries)

    def load(self, index):
        image_entry, ann = self.entries[index]
        image_file, ann_file = self.image_path(image_entry), self.annotation_path(ann)
        image = read_image(image_file, upright=self.exif_upright)
        png = read_image(ann_file, mode=None)
        if png.ndim != 3 or png.shape[2] != 3:
            raise DatasetError(f"Panoptic PNG '{ann_file}' must be RGB-encoded (3 channels), got shape {png.shape}.")
        segments = []
        for seg in ann["segments_info"]:
            if seg["category_id"] not in self.category_map:
                raise DatasetError(f"{ann_file}: segment {seg['id']} has unknown category {seg['category_id']}; run "
                                   f"tools/check_dataset.py on this dataset.")
            segments.append({"id": int(seg["id"]), "category_id": self.category_map[seg["category_id"]],
                             "iscrowd": int(seg.get("iscrowd", 0))})
        ids = rgb2id(png)
        if self.resize is not None:
            if image.shape[:2] != ids.shape:
                raise DatasetError(f"{image_file} is {image.shape[1]}x{image.shape[0]} but its panoptic annotation "
                                   f"{ann_file} is {ids.shape[1]}x{ids.shape[0]} (width x height).")
            image, ids = resize_to_range(image, ids, *self.resize)
        return {"image": image, "panoptic": ids, "segments": segments, "file_name": str(image_entry["id"]),
                "image_file": image_file, "annotation_file": ann_file}


def _resize_from_config(d):
    if d.MIN_RESIZE_VALUE < 0 and d.MAX_RESIZE_VALUE < 0:
        return None
    return d.MIN_RESIZE_VALUE, d.MAX_RESIZE_VALUE, d.RESIZE_FACTOR


def _path(root, path):
    return path if os.path.isabs(path) else os.path.join(root, path)


@register_dataset("coco_panoptic_format")
class CustomPanoptic(CocoPanopticFormat):
    """Any dataset in COCO panoptic format: DATASET.JSON_FILE, DATASET.PANOPTIC_DIR and DATASET.IMAGE_DIR (relative
    to DATASET.ROOT, ``{split}`` replaced by the split name); categories need ``id``, ``name``, ``isthing`` and
    optionally ``color``."""

    @classmethod
    def paths(cls, cfg, split):
        d = cfg.DATASET
        missing = [k for k in ("JSON_FILE", "PANOPTIC_DIR", "IMAGE_DIR") if not getattr(d, k)]
        if missing:
            raise ValueError(f"DATASET.DATASET coco_panoptic_format needs {', '.join('DATASET.' + k for k in missing)}"
                             f" (see datasets/README.md).")
        return tuple(_path(d.ROOT, getattr(d, k).format(split=split)) for k in ("JSON_FILE", "PANOPTIC_DIR",
                                                                                 "IMAGE_DIR"))

    @classmethod
    def metadata_from_config(cls, cfg):
        data = read_json(cls.paths(cfg, cfg.DATASET.TRAIN_SPLIT)[0], "DATASET.JSON_FILE")
        return metadata_from_categories(cfg.DATASET.DATASET, data["categories"], cls.LABEL_DIVISOR)[0]

    @classmethod
    def from_config(cls, cfg, split, **kw):
        json_file, png_dir, image_dir = cls.paths(cfg, split)
        return cls(split, json_file, png_dir, image_dir, resize=_resize_from_config(cfg.DATASET), **kw)


@register_dataset("coco_panoptic")
class CocoPanoptic(CocoPanopticFormat):
    """COCO 2017 panoptic: annotations/panoptic_{split}2017.json + PNG folder, {split}2017/ images; 133 classes with
    contiguous train ids (80 things first), label divisor 256 as the original repository."""

    LABEL_DIVISOR = 256

    @classmethod
    def paths(cls, cfg, split):
        root = cfg.DATASET.ROOT
        return (os.path.join(root, "annotations", f"panoptic_{split}2017.json"),
                os.path.join(root, "annotations", f"panoptic_{split}2017"), os.path.join(root, f"{split}2017"))

    @classmethod
    def metadata_from_config(cls, cfg):
        data = read_json(cls.paths(cfg, cfg.DATASET.TRAIN_SPLIT)[0])
        return metadata_from_categories("coco_panoptic", data["categories"], cls.LABEL_DIVISOR)[0]

    @classmethod
    def instance_ground_truth(cls, cfg, split):
        return "coco", os.path.join(cfg.DATASET.ROOT, "annotations", f"instances_{split}2017.json")

    @classmethod
    def from_config(cls, cfg, split, **kw):
        json_file, png_dir, image_dir = cls.paths(cfg, split)
        return cls(split, json_file, png_dir, image_dir, resize=_resize_from_config(cfg.DATASET), **kw)
