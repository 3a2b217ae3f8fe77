"""Backbones in plain torch with the parameter names of each family's public ImageNet checkpoint
(``BACKBONE_REGISTRY``): ResNet / ResNeXt / Wide ResNet, MobileNetV2, MNASNet, Xception-65, HRNet."""
from . import hrnet, mnasnet, mobilenet, resnet, xception  # noqa: F401  (registration)
from .build import (
    BACKBONE_REGISTRY,
    OUTPUT_STRIDES,
    build_backbone,
    load_backbone_weights,
    load_state_dict_from_url,
    supported_dilations,
)

__all__ = ["BACKBONE_REGISTRY", "OUTPUT_STRIDES", "build_backbone", "load_backbone_weights",
           "load_state_dict_from_url", "supported_dilations"]
