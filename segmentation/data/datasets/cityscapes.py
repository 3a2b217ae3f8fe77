"""Cityscapes: ``cityscapes`` (semantic, labelTrainIds PNGs) and ``cityscapes_panoptic`` (the JSON + PNG files of
cityscapesscripts' ``createPanopticImgs --use-train-id``). The class table comes from cityscapesscripts itself.

Layout under DATASET.ROOT::

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelTrainIds.png       (cityscapes)
    gtFine/cityscapes_panoptic_{split}_trainId.json                          (cityscapes_panoptic)
    gtFine/cityscapes_panoptic_{split}_trainId/{...}_gtFine_panoptic.png
    gtFine/cityscapes_panoptic_{split}.json + folder                          (eval ids, for official evaluation)

No split size is asserted: a subset works.
"""
import glob
import os

import numpy as np

from ..metadata import DatasetMetadata
from .base import DatasetError, PanopticDataset, read_image, register_dataset, require_dir
from .coco_format import CocoPanopticFormat


def _cityscapes_metadata():
    from cityscapesscripts.helpers.labels import labels
    train = sorted((lb for lb in labels if 0 <= lb.trainId < 255), key=lambda lb: lb.trainId)
    return DatasetMetadata(
        name="cityscapes", class_names=tuple(lb.name for lb in train),
        thing_ids=tuple(lb.trainId for lb in train if lb.hasInstances), colors=tuple(tuple(lb.color) for lb in train),
        label_divisor=1000, ignore_label=255, eval_ids=tuple(lb.id for lb in train))


CITYSCAPES_METADATA = _cityscapes_metadata()


def _instance_ground_truth(cls, cfg, split):
    return "cityscapes", os.path.join(cfg.DATASET.ROOT, "gtFine", split)


def _image_path(root, split, image_id):
    city = image_id.split("_")[0]
    return os.path.join(root, "leftImg8bit", split, city, f"{image_id}_leftImg8bit.png")


@register_dataset("cityscapes")
class CityscapesSemantic(PanopticDataset):
    """Cityscapes semantic segmentation from ``*_gtFine_labelTrainIds.png`` (each class present is one segment)."""

    metadata = CITYSCAPES_METADATA

    def __init__(self, split, root, **kw):
        super().__init__(split=split, **kw)
        self.root = root
        require_dir(os.path.join(root, "gtFine", split), "Cityscapes gtFine/" + split)
        pattern = os.path.join(root, "gtFine", split, "*", "*_gtFine_labelTrainIds.png")
        self.label_files = sorted(glob.glob(pattern))
        if not self.label_files:
            raise FileNotFoundError(f"No file matches {pattern}; create them with cityscapesscripts' "
                                    f"csCreateTrainIdLabelImgs (datasets/README.md).")

    @classmethod
    def from_config(cls, cfg, split, **kw):
        return cls(split, cfg.DATASET.ROOT, **kw)

    instance_ground_truth = classmethod(_instance_ground_truth)  # gtFine/{split}/*/*_gtFine_instanceIds.png

    def __len__(self):
        return len(self.label_files)

    def load(self, index):
        label_file = self.label_files[index]
        image_id = os.path.basename(label_file)[: -len("_gtFine_labelTrainIds.png")]
        image_file = _image_path(self.root, self.split, image_id)
        image = read_image(image_file, upright=self.exif_upright)
        train_ids = read_image(label_file, mode=None)
        if train_ids.ndim != 2:
            raise DatasetError(f"Label PNG '{label_file}' must have one channel, got shape {train_ids.shape}.")
        ids = np.where(train_ids == 255, 0, train_ids.astype(np.int32) + 1)
        present = np.unique(train_ids)
        segments = [{"id": int(c) + 1, "category_id": int(c), "iscrowd": 0} for c in present if c != 255]
        return {"image": image, "panoptic": ids, "segments": segments, "file_name": image_id,
                "image_file": image_file, "annotation_file": label_file}


@register_dataset("cityscapes_panoptic")
class CityscapesPanoptic(CocoPanopticFormat):
    """Cityscapes panoptic from the train-id files of ``createPanopticImgs --use-train-id``."""

    metadata = CITYSCAPES_METADATA

    def __init__(self, split, root, **kw):
        self.root = root
        gt = os.path.join(root, "gtFine")
        super().__init__(split, os.path.join(gt, f"cityscapes_panoptic_{split}_trainId.json"),
                         os.path.join(gt, f"cityscapes_panoptic_{split}_trainId"),
                         os.path.join(root, "leftImg8bit", split), metadata=CITYSCAPES_METADATA,
                         category_map={i: i for i in range(CITYSCAPES_METADATA.num_classes)}, **kw)

    @classmethod
    def from_config(cls, cfg, split, **kw):
        return cls(split, cfg.DATASET.ROOT, **kw)

    instance_ground_truth = classmethod(_instance_ground_truth)  # gtFine/{split}/*/*_gtFine_instanceIds.png

    def image_path(self, image):
        return _image_path(self.root, self.split, str(image["id"]))
