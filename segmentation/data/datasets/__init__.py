"""Datasets and their registry (``DATASET_REGISTRY``, selected by DATASET.DATASET)."""
from . import cityscapes, coco_format, synthetic  # noqa: F401  (registration)
from .base import DATASET_REGISTRY, DatasetError, PanopticDataset, build_dataset, collate, read_image, register_dataset
from .synthetic import SYNTHETIC_METADATA, SyntheticPanoptic, render_scene

__all__ = ["DATASET_REGISTRY", "DatasetError", "PanopticDataset", "SYNTHETIC_METADATA", "SyntheticPanoptic",
           "build_dataset", "collate", "read_image", "register_dataset", "render_scene"]
