"""Xception-65 (the DeepLab variant: 65 layers, strided separable convs instead of max-pooling), output stride
8/16/32 through dilation, with the parameter names of the TensorFlow-converted ImageNet checkpoint the original
repository loads (``tf-xception65``).

Feature keys: ``stem`` 64 ch stride 2; ``res2`` 256 ch stride 4 and ``res3`` 728 ch stride 8 (the entry-flow blocks'
features before their strided last conv, as DeepLab's decoder reads them); ``res4`` 728 ch stride 16 (middle flow);
``res5`` 2048 ch stride 32 (exit flow). Every separable conv is ReLU, depthwise 3x3, BN, pointwise 1x1, BN
("relu first"), except the last block's, which apply ReLU after each BN.
"""
from collections import OrderedDict

import torch.nn as nn

from .build import BACKBONE_REGISTRY, OUTPUT_STRIDES, FeatureBackbone, check_dilation, finish_backbone

_URL = "https://github.com/LikeLy-Journey/SegmenTron/releases/download/v0.1.0/tf-xception65-270e81cf.pth"


class SeparableConv2d(nn.Module):
    def __init__(self, cin, cout, stride=1, dilation=1, relu_first=True):
        super().__init__()
        depthwise = nn.Conv2d(cin, cin, 3, stride, padding=dilation, dilation=dilation, groups=cin, bias=False)
        pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        if relu_first:
            layers = [("relu", nn.ReLU()), ("depthwise", depthwise), ("bn_depth", nn.BatchNorm2d(cin)),
                      ("pointwise", pointwise), ("bn_point", nn.BatchNorm2d(cout))]
        else:
            layers = [("depthwise", depthwise), ("bn_depth", nn.BatchNorm2d(cin)), ("relu1", nn.ReLU(inplace=True)),
                      ("pointwise", pointwise), ("bn_point", nn.BatchNorm2d(cout)), ("relu2", nn.ReLU(inplace=True))]
        self.block = nn.Sequential(OrderedDict(layers))

    def forward(self, x):
        return self.block(x)


class XceptionBlock(nn.Module):
    """Three separable convs (the last one strided) and a skip: ``conv`` (1x1 strided conv + BN), ``sum`` or
    ``none``. ``forward`` returns (output, input of the last separable conv)."""

    def __init__(self, channels, stride=1, dilation=1, skip="conv", relu_first=True):
        super().__init__()
        self.skip = skip
        if skip == "conv":
            self.conv = nn.Conv2d(channels[0], channels[3], 1, stride, bias=False)
            self.bn = nn.BatchNorm2d(channels[3])
        self.sep_conv1 = SeparableConv2d(channels[0], channels[1], 1, dilation, relu_first)
        self.sep_conv2 = SeparableConv2d(channels[1], channels[2], 1, dilation, relu_first)
        self.sep_conv3 = SeparableConv2d(channels[2], channels[3], stride, dilation, relu_first)

    def forward(self, x):
        before_last = self.sep_conv2(self.sep_conv1(x))
        out = self.sep_conv3(before_last)
        if self.skip == "conv":
            out = out + self.bn(self.conv(x))
        elif self.skip == "sum":
            out = out + x
        return out, before_last


class Xception65(FeatureBackbone, nn.Module):
    def __init__(self, replace_stride_with_dilation=(False, False, False)):
        super().__init__()
        # output stride 32 -> block3 stride 2, middle dilation 1, exit (stride 2, dilations 1, 1)
        # output stride 16 -> exit block stride 1, exit dilations (1, 2); output stride 8 -> also block3 stride 1,
        # middle dilation 2, exit dilations (2, 4)
        os8, os16 = replace_stride_with_dilation[1], replace_stride_with_dilation[2]
        entry3_stride, middle_dilation = (1, 2) if os8 else (2, 1)
        exit_stride, exit_dilations = (1, (2, 4)) if os8 else ((1, (1, 2)) if os16 else (2, (1, 1)))
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.block1 = XceptionBlock((64, 128, 128, 128), stride=2)
        self.block2 = XceptionBlock((128, 256, 256, 256), stride=2)
        self.block3 = XceptionBlock((256, 728, 728, 728), stride=entry3_stride)
        self.midflow = nn.Sequential(*[XceptionBlock((728,) * 4, dilation=middle_dilation, skip="sum")
                                       for _ in range(16)])
        self.block20 = XceptionBlock((728, 728, 1024, 1024), stride=exit_stride, dilation=exit_dilations[0])
        self.block21 = XceptionBlock((1024, 1536, 1536, 2048), dilation=exit_dilations[1], skip="none",
                                     relu_first=False)
        out = 8 if os8 else (16 if os16 else 32)
        self.out_channels = {"stem": 64, "res2": 256, "res3": 728, "res4": 728, "res5": 2048}
        self.strides = {"stem": 2, "res2": 4, "res3": 8, "res4": min(16, out), "res5": out}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stages(self):
        """(key, modules computing it from the previous key's main path); res2 / res3 are the features of block2 /
        block3 before their strided last conv, while the main path continues from the blocks' outputs."""
        return [("stem", nn.ModuleList([self.conv1, self.bn1, self.conv2, self.bn2])),
                ("res2", nn.ModuleList([self.block1, self.block2])), ("res3", self.block3), ("res4", self.midflow),
                ("res5", nn.ModuleList([self.block20, self.block21]))]

    def forward(self, x):
        wanted = self._out_features
        out = {}

        def done():
            return wanted is not None and wanted <= out.keys()

        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        out["stem"] = x
        if done():
            return out
        x, out["res2"] = self.block2(self.block1(x)[0])
        if done():
            return out
        x, out["res3"] = self.block3(x)
        if done():
            return out
        for block in self.midflow:
            x = block(x)[0]
        out["res4"] = x
        if done():
            return out
        out["res5"] = self.block21(self.block20(x)[0])[0]
        return out


@BACKBONE_REGISTRY.register("xception65")
def _build(name, dilation, bn_momentum):
    model = Xception65(check_dilation(dilation, name))
    return finish_backbone(model, "xception", _URL, OUTPUT_STRIDES[tuple(dilation)], bn_momentum)
