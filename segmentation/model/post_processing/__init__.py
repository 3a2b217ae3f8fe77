"""Pure tensor decoding functions (no OM, no config): usable for export and as reference oracles."""
from .instance_post_processing import (
    find_instance_center,
    get_instance_segmentation,
    get_panoptic_segmentation,
    group_pixels,
    instance_classes,
    merge_semantic_and_instance,
    thing_mask,
)
from .semantic_post_processing import first_max_index, get_semantic_segmentation

__all__ = ["find_instance_center", "first_max_index", "get_instance_segmentation", "get_panoptic_segmentation",
           "get_semantic_segmentation", "group_pixels", "instance_classes", "merge_semantic_and_instance",
           "thing_mask"]
