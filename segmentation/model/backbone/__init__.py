"""Backbones in plain torch with torchvision parameter names (``BACKBONE_REGISTRY``)."""
from . import mobilenet, resnet  # noqa: F401  (registration)
from .build import BACKBONE_REGISTRY, OUTPUT_STRIDES, build_backbone, load_backbone_weights, load_state_dict_from_url

__all__ = ["BACKBONE_REGISTRY", "OUTPUT_STRIDES", "build_backbone", "load_backbone_weights",
           "load_state_dict_from_url"]
