"""Decoders (ASPP, Panoptic-DeepLab, DeepLabV3, DeepLabV3+) and heads."""
from .aspp import ASPP, ASPPPooling
from .conv_module import basic_conv, depthwise_separable_conv, init_decoder_weights
from .panoptic_deeplab import (
    DeepLabV3Decoder,
    DeepLabV3PlusDecoder,
    PanopticDeepLabDecoder,
    SinglePanopticDeepLabDecoder,
    SinglePanopticDeepLabHead,
)

__all__ = ["ASPP", "ASPPPooling", "DeepLabV3Decoder", "DeepLabV3PlusDecoder", "PanopticDeepLabDecoder",
           "SinglePanopticDeepLabDecoder", "SinglePanopticDeepLabHead", "basic_conv", "depthwise_separable_conv",
           "init_decoder_weights"]
