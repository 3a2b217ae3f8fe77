"""HRNet-W18 / W32 / W48 (HRNetV2) with the parameter names of the HRNet ImageNet classification checkpoints
(``hrnetv2_w{18,32,48}_imagenet_pretrained.pth``), classification head included so that they load strictly.

Four parallel branches of widths C, 2C, 4C, 8C (C = 18, 32, 48) at strides 4, 8, 16, 32, exchanging information in
every module (lower resolutions upsampled bilinearly, with MODEL.ALIGN_CORNERS: the original's). Feature keys
``res2`` .. ``res5`` = the four branches, as the original repository's HRNet backbone (its H48 decoder reads ASPP from
``res5``, 384 channels, and fuses ``res4``, ``res3``, ``res2``). HRNet keeps its resolution by design:
MODEL.BACKBONE.DILATION must be (False, False, False).
"""
import torch.nn as nn
import torch.nn.functional as F

from .build import BACKBONE_REGISTRY, FeatureBackbone, check_dilation, finish_backbone
from .resnet import BasicBlock, Bottleneck

# The HRNet authors publish the ImageNet checkpoints (HRNet-Image-Classification: hrnetv2_w18/w32/w48_imagenet_
# pretrained.pth) on a file-sharing service without stable download URLs: MODEL.BACKBONE.WEIGHTS takes the file.
WEIGHTS_HELP = ("HRNet ImageNet weights have no stable download URL: download hrnetv2_w{w}_imagenet_pretrained.pth "
                "from the HRNet-Image-Classification project, then set MODEL.BACKBONE.PRETRAINED False and "
                "MODEL.BACKBONE.WEIGHTS to the file.")
_WIDTHS = {"hrnet18": 18, "hrnet32": 32, "hrnet48": 48}
# (modules, branches) of stages 2-4; every branch has 4 BasicBlocks
_STAGES = ((1, 2), (4, 3), (3, 4))
_HEAD_CHANNELS = (32, 64, 128, 256)  # classification head (incre_modules), kept for strict checkpoint loading


def _conv_bn(cin, cout, kernel, stride=1, relu=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


def _make_layer(block, inplanes, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every output branch sums all inputs brought to its resolution:
    1x1 conv + BN + bilinear upsampling from lower resolutions, chains of strided 3x3 convs from higher ones."""

    align_corners = True  # set by HRNet.set_align_corners (MODEL.ALIGN_CORNERS)

    def __init__(self, channels, blocks=4):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList([_make_layer(BasicBlock, c, c, blocks) for c in channels])
        self.fuse_layers = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False),
                                             nn.BatchNorm2d(channels[i])))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [_conv_bn(channels[j], channels[j], 3, 2) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs):
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        return [self.relu(sum(self._resize(fuse(x), xs[i].shape[-2:]) for fuse, x in zip(row, xs)))
                for i, row in enumerate(self.fuse_layers)]

    def _resize(self, x, size):
        if x.shape[-2:] == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)


class HRNet(FeatureBackbone, nn.Module):
    def __init__(self, width, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_layer(Bottleneck, 64, 64, 4)
        channels = [width * 2 ** i for i in range(4)]
        previous = [256]
        for s, (modules, branches) in enumerate(_STAGES, start=2):
            current = channels[:branches]
            setattr(self, f"transition{s - 1}", self._transition(previous, current))
            setattr(self, f"stage{s}", nn.Sequential(*[HighResolutionModule(current) for _ in range(modules)]))
            previous = current
        # classification head of the ImageNet checkpoints (unused for segmentation, frozen by set_out_features)
        self.incre_modules = nn.ModuleList([_make_layer(Bottleneck, c, h, 1) for c, h in zip(channels,
                                                                                             _HEAD_CHANNELS)])
        self.downsamp_modules = nn.ModuleList([
            nn.Sequential(nn.Conv2d(_HEAD_CHANNELS[i] * 4, _HEAD_CHANNELS[i + 1] * 4, 3, 2, 1),
                          nn.BatchNorm2d(_HEAD_CHANNELS[i + 1] * 4), nn.ReLU(inplace=True)) for i in range(3)])
        self.final_layer = nn.Sequential(nn.Conv2d(_HEAD_CHANNELS[3] * 4, 2048, 1), nn.BatchNorm2d(2048),
                                         nn.ReLU(inplace=True))
        self.classifier = nn.Linear(2048, num_classes)
        self.out_channels = {"res2": channels[0], "res3": channels[1], "res4": channels[2], "res5": channels[3]}
        self.strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _transition(previous, current):
        """Existing branches adapt their width (or pass through); each new branch is a strided 3x3 conv from the
        lowest-resolution existing one."""
        layers = nn.ModuleList()
        for i, c in enumerate(current):
            if i < len(previous):
                layers.append(_conv_bn(previous[i], c, 3) if previous[i] != c else nn.Identity())
            else:
                layers.append(nn.Sequential(_conv_bn(previous[-1], c, 3, 2)))
        return layers

    def stages(self):
        """Every feature comes out of the whole body (the branches exchange information up to the last module):
        the body is listed under the first key, so any request keeps it trainable and freezes only the head."""
        body = nn.ModuleList([self.conv1, self.bn1, self.conv2, self.bn2, self.layer1, self.transition1,
                              self.stage2, self.transition2, self.stage3, self.transition3, self.stage4])
        return [("res2", body), ("res3", nn.ModuleList()), ("res4", nn.ModuleList()), ("res5", nn.ModuleList())]

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(self.relu(self.bn2(self.conv2(x))))
        xs = [t(x) for t in self.transition1]
        xs = self.stage2(xs)
        xs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(self.transition2)]
        xs = self.stage3(xs)
        xs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(self.transition3)]
        xs = self.stage4(xs)
        return {"res2": xs[0], "res3": xs[1], "res4": xs[2], "res5": xs[3]}

    def set_align_corners(self, align_corners):
        for m in self.modules():
            if isinstance(m, HighResolutionModule):
                m.align_corners = align_corners


def _build(name, dilation, bn_momentum):
    check_dilation(dilation, name, supported=_build.supported_dilations)
    return finish_backbone(HRNet(_WIDTHS[name]), "hrnet", None, 32, bn_momentum,
                           WEIGHTS_HELP.format(w=_WIDTHS[name]))


_build.supported_dilations = ((False, False, False),)  # read by supported_dilations()
for _name in _WIDTHS:
    BACKBONE_REGISTRY.register(_name)(_build)
