"""The Panoptic-DeepLab decoders and prediction heads, and the DeepLabV3/V3+ semantic decoders."""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .aspp import ASPP
from .conv_module import basic_conv, conv_stack

# The original repository's decoder convs: regular atrous convs in ASPP, one 5x5 depthwise-separable fuse conv.
DEFAULT_CONV = {"conv_type": "depthwise_separable_conv", "kernel": 5, "padding": 2, "stack": 1,
                "aspp_conv_type": "basic_conv"}


def conv_options(cfg):
    """The decoder conv options of MODEL.DECODER (CONV_TYPE, CONV_KERNEL, CONV_PADDING, CONV_STACK, ASPP_CONV_TYPE)."""
    d = cfg.MODEL.DECODER
    return {"conv_type": d.CONV_TYPE, "kernel": d.CONV_KERNEL, "padding": d.CONV_PADDING, "stack": d.CONV_STACK,
            "aspp_conv_type": d.ASPP_CONV_TYPE}


class SinglePanopticDeepLabDecoder(nn.Module):
    """ASPP on ``feature_key``, then for each low-level feature: 1x1 projection, upsample, concat, fuse conv (by
    default one 5x5 depthwise-separable conv; ``conv`` = dict(conv_type, kernel, padding, stack, aspp_conv_type)).
    Bilinear upsampling with ``align_corners`` (MODEL.ALIGN_CORNERS).

    Output: features at the stride of the last low-level key (stride 4 with res2 / layer_4).
    """

    def __init__(self, in_channels, feature_key, low_level_channels, low_level_key, low_level_channels_project,
                 decoder_channels, atrous_rates, aspp_channels=None, aspp_dropout=0.5, conv=None, align_corners=True):
        super().__init__()
        conv = {**DEFAULT_CONV, **(conv or {})}
        self.align_corners = align_corners
        aspp_channels = aspp_channels or decoder_channels
        self.aspp = ASPP(in_channels, aspp_channels, atrous_rates, aspp_dropout, conv["aspp_conv_type"])
        self.feature_key = feature_key
        self.low_level_key = list(low_level_key)
        if not len(low_level_channels) == len(low_level_key) == len(low_level_channels_project):
            raise ValueError("MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_CHANNELS, LOW_LEVEL_KEY and LOW_LEVEL_CHANNELS_PROJECT "
                             "(and INSTANCE.LOW_LEVEL_CHANNELS_PROJECT) must have the same length.")
        self.project = nn.ModuleList([basic_conv(c, p, 1) for c, p in zip(low_level_channels,
                                                                            low_level_channels_project)])
        fuse_in = [aspp_channels + low_level_channels_project[0]]
        fuse_in += [decoder_channels + p for p in low_level_channels_project[1:]]
        self.fuse = nn.ModuleList([conv_stack(conv["conv_type"], c, decoder_channels, conv["kernel"], conv["padding"],
                                              conv["stack"]) for c in fuse_in])

    def forward(self, features):
        x = self.aspp(features[self.feature_key])
        for key, project, fuse in zip(self.low_level_key, self.project, self.fuse):
            low = project(features[key])
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=self.align_corners)
            x = fuse(torch.cat([x, low], dim=1))
        return x


class SinglePanopticDeepLabHead(nn.Module):
    """One fuse conv (default: 5x5 depthwise-separable) + 1x1 classifier per output key."""

    def __init__(self, decoder_channels, head_channels, num_classes, class_key, conv=None):
        super().__init__()
        conv = {**DEFAULT_CONV, **(conv or {})}
        self.class_key = list(class_key)
        self.fuse = nn.ModuleDict({k: conv_stack(conv["conv_type"], decoder_channels, head_channels, conv["kernel"],
                                                 conv["padding"]) for k in class_key})
        self.classifier = nn.ModuleDict({k: nn.Conv2d(head_channels, n, 1) for k, n in zip(class_key, num_classes)})

    def forward(self, x):
        return OrderedDict((k, self.classifier[k](self.fuse[k](x))) for k in self.class_key)


class PanopticDeepLabDecoder(nn.Module):
    """Semantic decoder + head, and (if enabled) the instance decoder + centre/offset heads."""

    def __init__(self, cfg, num_classes):
        super().__init__()
        d, p = cfg.MODEL.DECODER, cfg.MODEL.PANOPTIC_DEEPLAB
        self.semantic_decoder = SinglePanopticDeepLabDecoder(
            d.IN_CHANNELS, d.FEATURE_KEY, p.LOW_LEVEL_CHANNELS, p.LOW_LEVEL_KEY, p.LOW_LEVEL_CHANNELS_PROJECT,
            d.DECODER_CHANNELS, d.ATROUS_RATES, aspp_dropout=d.ASPP_DROPOUT, conv=conv_options(cfg),
            align_corners=cfg.MODEL.ALIGN_CORNERS)
        self.semantic_head = SinglePanopticDeepLabHead(d.DECODER_CHANNELS, d.DECODER_CHANNELS, [num_classes],
                                                       ["semantic"], conv=conv_options(cfg))
        self.instance_enabled = p.INSTANCE.ENABLE
        if self.instance_enabled:
            i = p.INSTANCE
            self.instance_decoder = SinglePanopticDeepLabDecoder(
                d.IN_CHANNELS, d.FEATURE_KEY, p.LOW_LEVEL_CHANNELS, p.LOW_LEVEL_KEY, i.LOW_LEVEL_CHANNELS_PROJECT,
                i.DECODER_CHANNELS, d.ATROUS_RATES, aspp_channels=i.ASPP_CHANNELS, aspp_dropout=d.ASPP_DROPOUT,
                conv=conv_options(cfg), align_corners=cfg.MODEL.ALIGN_CORNERS)
            self.instance_head = SinglePanopticDeepLabHead(i.DECODER_CHANNELS, i.HEAD_CHANNELS, i.NUM_CLASSES,
                                                           i.CLASS_KEY, conv=conv_options(cfg))

    def forward(self, features):
        out = OrderedDict(self.semantic_head(self.semantic_decoder(features)))
        if self.instance_enabled:
            out.update(self.instance_head(self.instance_decoder(features)))
        return out


class DeepLabV3Decoder(nn.Module):
    """ASPP, a 3x3 conv and a 1x1 classifier (semantic only)."""

    def __init__(self, cfg, num_classes):
        super().__init__()
        d = cfg.MODEL.DECODER
        self.feature_key = d.FEATURE_KEY
        self.aspp = ASPP(d.IN_CHANNELS, d.DECODER_CHANNELS, d.ATROUS_RATES, d.ASPP_DROPOUT, d.ASPP_CONV_TYPE)
        self.conv = basic_conv(d.DECODER_CHANNELS, d.DECODER_CHANNELS, 3, padding=1)
        self.classifier = nn.Conv2d(d.DECODER_CHANNELS, num_classes, 1)

    def forward(self, features):
        return OrderedDict(semantic=self.classifier(self.conv(self.aspp(features[self.feature_key]))))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP, upsample to the low-level feature, concat its 1x1 projection, two 3x3 fuse convs of
    MODEL.DECODER.CONV_TYPE (depthwise-separable: the original's), 1x1 classifier."""

    def __init__(self, cfg, num_classes):
        super().__init__()
        d, p = cfg.MODEL.DECODER, cfg.MODEL.DEEPLABV3PLUS
        self.decoder = SinglePanopticDeepLabDecoder(d.IN_CHANNELS, d.FEATURE_KEY, [p.LOW_LEVEL_CHANNELS],
                                                    [p.LOW_LEVEL_KEY], [p.LOW_LEVEL_CHANNELS_PROJECT],
                                                    d.DECODER_CHANNELS, d.ATROUS_RATES, aspp_dropout=d.ASPP_DROPOUT,
                                                    conv={**conv_options(cfg), "kernel": 3, "padding": 1, "stack": 2},
                                                    align_corners=cfg.MODEL.ALIGN_CORNERS)
        self.classifier = nn.Conv2d(d.DECODER_CHANNELS, num_classes, 1)

    def forward(self, features):
        return OrderedDict(semantic=self.classifier(self.decoder(features)))
