"""Dataset checker: every problem of a dataset, each with the file it is in.

``check_dataset(dataset, deep=True)`` reads every annotation (and image header) and returns a ``CheckReport``.
``deep=False`` checks only what the JSON and the file system tell (cheap): it runs before every training.
"""
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .datasets.base import DatasetError
from .datasets.coco_format import CocoPanopticFormat, rgb2id

_ORIENTATION = 0x0112  # the EXIF orientation tag: 1 as stored; 2-8 turned and/or mirrored for viewing
_SWAPS_SIDES = (5, 6, 7, 8)  # the orientations that turn an image by a quarter (width and height swap)


@dataclass
class CheckReport:
    errors: list = field(default_factory=list)  # "path: what is wrong"
    notes: list = field(default_factory=list)  # what is not wrong but worth a look (e.g. EXIF orientation tags)
    images: int = 0
    segments_per_class: Counter = field(default_factory=Counter)
    thing_pixels: int = 0
    stuff_pixels: int = 0

    def count(self, train_id, area, metadata):
        """Add one segment of class ``train_id`` covering ``area`` pixels to the summary."""
        self.segments_per_class[train_id] += 1
        if train_id in metadata.thing_ids:
            self.thing_pixels += area
        else:
            self.stuff_pixels += area

    @property
    def ok(self):
        return not self.errors

    def summary(self, metadata):
        total = max(self.thing_pixels + self.stuff_pixels, 1)
        lines = [f"{self.images} images, {sum(self.segments_per_class.values())} segments; labelled pixels: "
                 f"{100 * self.thing_pixels / total:.1f}% things, {100 * self.stuff_pixels / total:.1f}% stuff"]
        for c, name in enumerate(metadata.class_names):
            kind = "thing" if c in metadata.thing_ids else "stuff"
            lines.append(f"  {c:3d} {name:24s} {kind:5s} {self.segments_per_class.get(c, 0):7d} segments")
        return "\n".join(lines)


def check_dataset(dataset, deep=True, max_errors=None):
    """Check a dataset. COCO-panoptic-format datasets (COCO, Cityscapes panoptic, custom) get file-level checks of
    their JSON and PNGs; every other dataset (Cityscapes semantic, synthetic, ...) has each sample read through its
    own ``load`` and checked (``check_samples``). ``deep=False``: only what is cheap (no image is read)."""
    report = CheckReport()
    if not isinstance(dataset, CocoPanopticFormat):
        if len(dataset) == 0:
            report.errors.append(f"the {dataset.split} split has no sample")
        if deep:
            check_samples(dataset, report, max_errors)
        return report
    meta = dataset.metadata
    known = dataset.category_map
    tagged = []  # images whose EXIF orientation tag turns or mirrors them for viewing
    for image_entry, ann in dataset.entries:
        if max_errors is not None and len(report.errors) >= max_errors:
            break
        report.images += 1
        image_file, ann_file = dataset.image_path(image_entry), dataset.annotation_path(ann)
        errors = report.errors
        for path, what in ((image_file, "image"), (ann_file, "panoptic PNG")):
            if not os.path.isfile(path):
                errors.append(f"{path}: {what} file is missing")
        infos = ann.get("segments_info", [])
        for seg in infos:
            cat = seg.get("category_id")
            if cat not in known:
                errors.append(f"{ann_file}: segment {seg.get('id')} has unknown category {cat}")
            elif seg.get("iscrowd", 0) and known[cat] not in meta.thing_ids:
                errors.append(f"{ann_file}: segment {seg.get('id')} is marked crowd but its category {cat} "
                              f"({meta.class_names[known[cat]]}) is a stuff class")
        if not deep or not os.path.isfile(ann_file) or not os.path.isfile(image_file):
            continue
        orientation = 1
        try:
            with Image.open(image_file) as im:
                im.load()
                image_size = im.size
                orientation = im.getexif().get(_ORIENTATION, 1)
        except Exception as e:  # noqa: BLE001 - any decoding failure is a finding, not a crash
            errors.append(f"{image_file}: image cannot be read ({e})")
            image_size = None
        if orientation in range(2, 9):
            tagged.append(image_file)
        turned = image_size is not None and orientation in _SWAPS_SIDES
        if turned and dataset.exif_upright:
            image_size = image_size[::-1]
        try:
            with Image.open(ann_file) as im:
                mode = im.mode
                png = np.asarray(im)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{ann_file}: panoptic PNG cannot be read ({e})")
            continue
        if mode != "RGB":
            errors.append(f"{ann_file}: panoptic PNG has mode {mode}, expected RGB (id = R + 256 G + 256^2 B)")
            continue
        if image_size is not None and image_size != (png.shape[1], png.shape[0]):
            upright = turned and dataset.exif_upright
            message = (f"{ann_file}: annotation is {png.shape[1]}x{png.shape[0]} but image {image_file} is "
                       f"{image_size[0]}x{image_size[1]}{' read upright' if upright else ''}")
            if turned and image_size[::-1] == (png.shape[1], png.shape[0]):
                frame = "as stored" if upright else f"turned as its EXIF orientation tag ({orientation}) says"
                message += f"; it matches the image {frame}: set DATASET.EXIF_UPRIGHT {not upright}"
            errors.append(message)
        ids, areas = np.unique(rgb2id(png), return_counts=True)
        area_of = dict(zip(ids.tolist(), areas.tolist()))
        listed = {seg.get("id") for seg in infos}
        for seg_id in sorted(set(area_of) - listed - {0}):
            errors.append(f"{ann_file}: id {seg_id} is in the PNG but not in segments_info")
        for seg in infos:
            seg_id, cat = seg.get("id"), seg.get("category_id")
            if seg_id not in area_of:
                errors.append(f"{ann_file}: segment {seg_id} of segments_info is absent from the PNG")
                continue
            if "area" in seg and seg["area"] != area_of[seg_id]:
                errors.append(f"{ann_file}: segment {seg_id} has area {seg['area']} in the JSON but "
                              f"{area_of[seg_id]} pixels in the PNG")
            if cat in known:
                report.count(known[cat], area_of[seg_id], meta)
    if tagged:
        frame = ("upright, turned as their tag says (DATASET.EXIF_UPRIGHT True)" if dataset.exif_upright else
                 "as stored, ignoring their tag (DATASET.EXIF_UPRIGHT False)")
        report.notes.append(f"{len(tagged)} of {report.images} images carry an EXIF orientation tag that turns or "
                            f"mirrors them in image viewers (e.g. {tagged[0]}); they are read {frame}. Check that "
                            f"their annotations were drawn in that frame: a half turn keeps the size, so no size "
                            f"check can tell.")
    return report


def check_samples(dataset, report, max_errors=None):
    """Read every sample with ``dataset.load`` and check it: readable, an RGB uint8 image of the annotation's
    size, every id of the map listed in ``segments`` and the reverse, categories within DATASET.NUM_CLASSES, crowd
    flags only on things. Findings go to ``report`` (with the sample's file), as do the per-class counts."""
    meta = dataset.metadata
    for index in range(len(dataset)):
        if max_errors is not None and len(report.errors) >= max_errors:
            break
        try:
            raw = dataset.load(index)
        except Exception as e:  # noqa: BLE001 - an unreadable sample is a finding, not a crash
            report.errors.append(f"sample {index}: {e}")
            continue
        report.images += 1
        where = raw.get("annotation_file") or raw.get("file_name", f"sample {index}")
        image, pan, errors = np.asarray(raw["image"]), np.asarray(raw["panoptic"]), report.errors
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            errors.append(f"{raw.get('image_file', where)}: image is {image.dtype} {image.shape}, expected RGB uint8")
        if image.shape[:2] != pan.shape:
            errors.append(f"{where}: annotation is {pan.shape[1]}x{pan.shape[0]} but the image is "
                          f"{image.shape[1]}x{image.shape[0]}")
        ids, areas = np.unique(pan, return_counts=True)
        area_of = dict(zip(ids.tolist(), areas.tolist()))
        segments = raw["segments"]
        listed = {seg["id"] for seg in segments}
        for seg_id in sorted(set(area_of) - listed - {0}):
            errors.append(f"{where}: id {seg_id} is in the annotation but not in its segments")
        for seg in segments:
            seg_id, cat = seg["id"], seg["category_id"]
            if seg_id not in area_of:
                errors.append(f"{where}: segment {seg_id} is listed but absent from the annotation")
            elif not 0 <= cat < meta.num_classes:
                errors.append(f"{where}: segment {seg_id} has category {cat}, outside the {meta.num_classes} "
                              f"classes (0..{meta.num_classes - 1}; {meta.ignore_label} is ignored)")
            elif seg.get("iscrowd", 0) and cat not in meta.thing_ids:
                errors.append(f"{where}: segment {seg_id} is marked crowd but its class {cat} "
                              f"({meta.class_names[cat]}) is a stuff class")
            else:
                report.count(cat, area_of[seg_id], meta)
    return report


def require_valid_dataset(dataset, config_path):
    """Raise DatasetError when the cheap checks find problems, pointing at tools/check_dataset.py."""
    report = check_dataset(dataset, deep=False, max_errors=20)
    if not report.ok:
        shown = "\n  ".join(report.errors[:5])
        raise DatasetError(f"The {dataset.split} split has problems, e.g.:\n  {shown}\nRun `python "
                           f"tools/check_dataset.py --cfg {config_path} --split {dataset.split}` for the full list.")
