"""Data transforms: augmentation on arrays and the CPU target generator."""
from .target_transforms import (
    PanopticTargetGenerator,
    draw_center_heatmap,
    encode_panoptic,
    gaussian_kernel,
    panoptic_targets,
    segment_index_map,
)
from .transforms import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    build_train_transforms,
    normalize,
    to_tensor,
)

__all__ = [
    "Compose", "PanopticTargetGenerator", "RandomCrop", "RandomHorizontalFlip", "RandomScale",
    "build_train_transforms", "draw_center_heatmap", "encode_panoptic", "gaussian_kernel", "normalize",
    "panoptic_targets", "segment_index_map", "to_tensor",
]
