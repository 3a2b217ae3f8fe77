"""Meta-architectures (``META_ARCH_REGISTRY``)."""
from .base import META_ARCH_REGISTRY, SegmentationModel
from .panoptic_deeplab import DeepLabV3, DeepLabV3Plus, PanopticDeepLab

__all__ = ["META_ARCH_REGISTRY", "DeepLabV3", "DeepLabV3Plus", "PanopticDeepLab", "SegmentationModel"]
