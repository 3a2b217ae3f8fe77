"""The dataset base class shared by every panoptic dataset, and the dataset registry."""
import dataclasses

import numpy as np
import torch
from torch.utils.data import Dataset

from ...utils.registry import Registry
from ..transforms import PanopticTargetGenerator, build_train_transforms, encode_panoptic, normalize, to_tensor

DATASET_REGISTRY = Registry(
    "DATASET_REGISTRY",
    contract="A PanopticDataset subclass with a ``from_config(cfg, split, **common)`` classmethod.",
    config_key="DATASET.DATASET",
)
register_dataset = DATASET_REGISTRY.register

TARGET_KEYS = ("semantic", "foreground", "center", "offset", "semantic_weights", "center_weights", "offset_weights")


class DatasetError(RuntimeError):
    """A sample could not be read or is inconsistent; the message names the file(s)."""


class PanopticDataset(Dataset):
    """Base class: subclasses implement ``__len__`` and ``load(index)``; this class augments and builds targets.

    ``load`` returns a dict with ``image`` (uint8 [H, W, 3] RGB), ``panoptic`` (int [H, W] segment ids, 0 = void),
    ``segments`` (list of ``{"id", "category_id" (train id), "iscrowd"}``) and ``file_name``.

    ``__getitem__`` returns ``image`` (float32 [3, H, W], normalised), ``panoptic`` (long [H, W], train-id encoding of
    ``metadata``), ``file_name`` and, unless ``pan_only``, the CPU targets of ``PanopticTargetGenerator``. Training
    samples with ``pan_only`` number crowd segments like instances and add ``crowd_table`` (bool [num_classes *
    label_divisor + 1], True on their ids): see ``encode_panoptic``.
    """

    metadata = None  # DatasetMetadata, set by subclasses (or per instance, for datasets whose JSON defines it)

    @classmethod
    def metadata_from_config(cls, cfg):
        """The dataset's metadata without building it (reads at most a small annotation file)."""
        return cls.metadata

    @classmethod
    def instance_ground_truth(cls, cfg, split):
        """``(format, path)`` of the instance ground truth used for AP (TEST.EVAL_INSTANCE), or None if the dataset
        has none; ``format`` names an evaluator of ``segmentation.evaluation.INSTANCE_EVALUATOR_REGISTRY``."""
        return None

    def __init__(self, split, is_train=False, transforms=None, target_generator=None, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), pan_only=False, semantic_only=False, seed=0, exif_upright=False):
        self.split = split
        self.exif_upright = exif_upright  # image files are turned by their EXIF orientation tag (read_image)
        self.is_train = is_train
        self.transforms = transforms
        self.target_generator = target_generator
        self.mean, self.std = tuple(mean), tuple(std)
        self.pan_only = pan_only
        self.semantic_only = semantic_only
        self.seed = seed
        self._epoch_rng = None

    def load(self, index):
        raise NotImplementedError

    def __getitem__(self, item):
        """``item`` is an index, or (index, stream position) from the TrainingSampler: the augmentation randomness
        is keyed on (seed, position), so it does not depend on workers, processes or interruptions."""
        index, position = item if isinstance(item, tuple) else (item, item)
        raw = self.load(index)
        image, pan = raw["image"], raw["panoptic"]
        if image.shape[:2] != pan.shape:
            raise DatasetError(f"{raw.get('image_file', raw['file_name'])} is {image.shape[1]}x{image.shape[0]} but "
                               f"its panoptic annotation {raw.get('annotation_file', '')} is {pan.shape[1]}x"
                               f"{pan.shape[0]} (width x height).")
        pan = pan.astype(np.int32, copy=False)
        if self.is_train and self.transforms is not None:
            image, pan = self.transforms(image, pan, np.random.default_rng([self.seed, position]))
        out = {"image": normalize(to_tensor(image), self.mean, self.std), "file_name": raw["file_name"]}
        if self.pan_only and self.is_train:  # the OM's targets need every crowd segment as its own segment
            out["panoptic"], out["crowd_table"] = encode_panoptic(pan, raw["segments"], self.metadata,
                                                                  distinct_crowd=True)
        else:
            out["panoptic"] = encode_panoptic(pan, raw["segments"], self.metadata)
        if not self.pan_only and self.target_generator is not None:
            targets = self.target_generator(pan, raw["segments"])
            keys = ("semantic", "semantic_weights") if self.semantic_only else TARGET_KEYS
            out.update({k: targets[k] for k in keys})
        return out


def configured_metadata(metadata, cfg):
    """``metadata`` with the config's overrides (DATASET.LABEL_DIVISOR)."""
    divisor = cfg.DATASET.LABEL_DIVISOR
    if divisor and divisor != metadata.label_divisor:
        if divisor < 2:
            raise ValueError(f"DATASET.LABEL_DIVISOR must be 0 (the dataset's) or at least 2, got {divisor}.")
        metadata = dataclasses.replace(metadata, label_divisor=int(divisor))
    return metadata


def build_dataset(cfg, split, is_train):
    """The dataset of DATASET.DATASET for ``split``, with augmentation and targets set up from ``cfg``."""
    from . import cityscapes, coco_format, synthetic  # noqa: F401  (registers the built-in datasets)

    cls = DATASET_REGISTRY.get(cfg.DATASET.DATASET)
    d = cfg.DATASET
    meta = configured_metadata(cls.metadata_from_config(cfg), cfg)
    if d.NUM_CLASSES != meta.num_classes:
        raise ValueError(f"DATASET.NUM_CLASSES is {d.NUM_CLASSES} but dataset '{d.DATASET}' has {meta.num_classes} "
                         f"classes ({', '.join(meta.class_names)}); set DATASET.NUM_CLASSES {meta.num_classes}.")
    generator = PanopticTargetGenerator(
        ignore_label=meta.ignore_label, rgb2id=lambda x: x, thing_list=meta.thing_ids, sigma=d.GAUSSIAN_SIGMA,
        ignore_stuff_in_offset=d.IGNORE_STUFF_IN_OFFSET, small_instance_area=d.SMALL_INSTANCE_AREA,
        small_instance_weight=d.SMALL_INSTANCE_WEIGHT, ignore_crowd_in_semantic=d.IGNORE_CROWD_IN_SEMANTIC)
    dataset = cls.from_config(
        cfg, split, is_train=is_train, transforms=build_train_transforms(cfg) if is_train else None,
        target_generator=generator, mean=d.MEAN, std=d.STD, pan_only=d.PAN_ONLY, semantic_only=d.SEMANTIC_ONLY,
        seed=max(cfg.SEED, 0), exif_upright=d.EXIF_UPRIGHT)
    if dataset.metadata.class_names != meta.class_names:
        raise ValueError(f"The {split} split's categories differ from the {d.TRAIN_SPLIT} split's.")
    dataset.metadata = meta
    return dataset


def collate(batch):
    """Stack tensors; keep strings as lists."""
    out = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def require_dir(path, what, config_key="DATASET.ROOT"):
    """Raise FileNotFoundError naming ``path`` and the config key unless it is an existing folder."""
    import os
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} folder '{path}' does not exist; check {config_key} "
                                f"(datasets/README.md shows the expected layout).")
    return path


def read_image(path, mode="RGB", upright=False):
    """Read an image file as a numpy array; raise DatasetError naming the file if it is missing or unreadable.

    ``upright``: turn the pixels as the file's EXIF orientation tag says (a phone stores a portrait photo as a
    landscape bitmap and a tag), giving the frame every image viewer shows; for photos given to the demo and the
    Predictor. Datasets read the stored pixels (the frame of Cityscapes' and COCO's annotations and of the
    official evaluators) unless DATASET.EXIF_UPRIGHT says their annotations were drawn on upright images.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            if upright:
                im = ImageOps.exif_transpose(im)
            return np.array(im.convert(mode) if mode else im)
    except FileNotFoundError:
        raise DatasetError(f"Image file '{path}' does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DatasetError(f"Image file '{path}' cannot be read ({e}).") from None
