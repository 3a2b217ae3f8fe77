"""ResNet-18/34/50/101, ResNeXt-50 32x4d / 101 32x8d and Wide ResNet-50-2 / 101-2 with torchvision parameter names;
stride replaced by dilation for output stride 8/16/32."""
import torch.nn as nn

from .build import BACKBONE_REGISTRY, OUTPUT_STRIDES, FeatureBackbone, check_dilation, finish_backbone

_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnext50_32x4d": "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth",
    "wide_resnet50_2": "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth",
    "wide_resnet101_2": "https://download.pytorch.org/models/wide_resnet101_2-32ee1156.pth",
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1, groups=1, base_width=64):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64.")
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups  # ResNeXt: grouped 3x3; Wide ResNet: wider 3x3
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, groups=groups,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class _Stem(nn.Module):
    """conv1 + bn1 + relu of a ResNet, as a view on the parent's modules (registers no parameter of its own)."""

    def __init__(self, resnet):
        super().__init__()
        self.__dict__["_resnet"] = resnet  # not a submodule: parameter names stay torchvision's

    def parameters(self, recurse=True):
        r = self._resnet
        return iter([*r.conv1.parameters(), *r.bn1.parameters()])

    def forward(self, x):
        r = self._resnet
        return r.relu(r.bn1(r.conv1(x)))


class ResNet(FeatureBackbone, nn.Module):
    """ResNet returning ``stem`` (stride 2) and ``res2``..``res5``; keeps ``fc`` so checkpoints load strictly."""

    def __init__(self, block, layers, replace_stride_with_dilation=(False, False, False), num_classes=1000, groups=1,
                 width_per_group=64):
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.groups, self.base_width = groups, width_per_group
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        e = block.expansion
        stride = {"stem": 2, "res2": 4}
        s = 4
        for key, dil in zip(("res3", "res4", "res5"), replace_stride_with_dilation):
            s = s if dil else s * 2
            stride[key] = s
        self.strides = stride
        self.out_channels = {"stem": 64, "res2": 64 * e, "res3": 128 * e, "res4": 256 * e, "res5": 512 * e}

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation, groups=self.groups,
                         base_width=self.base_width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stages(self):
        return [("stem", _Stem(self)), ("res2", nn.Sequential(self.maxpool, self.layer1)), ("res3", self.layer2),
                ("res4", self.layer3), ("res5", self.layer4)]


# name -> (block, blocks per stage, groups, width per group)
_SPECS = {"resnet18": (BasicBlock, [2, 2, 2, 2], 1, 64), "resnet34": (BasicBlock, [3, 4, 6, 3], 1, 64),
          "resnet50": (Bottleneck, [3, 4, 6, 3], 1, 64), "resnet101": (Bottleneck, [3, 4, 23, 3], 1, 64),
          "resnext50_32x4d": (Bottleneck, [3, 4, 6, 3], 32, 4),
          "resnext101_32x8d": (Bottleneck, [3, 4, 23, 3], 32, 8),
          "wide_resnet50_2": (Bottleneck, [3, 4, 6, 3], 1, 128),
          "wide_resnet101_2": (Bottleneck, [3, 4, 23, 3], 1, 128)}


def _build(name, dilation, bn_momentum):
    block, layers, groups, width = _SPECS[name]
    model = ResNet(block, layers, check_dilation(dilation, name), groups=groups, width_per_group=width)
    return finish_backbone(model, "resnet", _URLS[name], OUTPUT_STRIDES[tuple(dilation)], bn_momentum)


for _name in _SPECS:
    BACKBONE_REGISTRY.register(_name)(_build)
