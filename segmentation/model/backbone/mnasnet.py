"""MNASNet 0.5 / 0.75 / 1.0 / 1.3 with torchvision parameter names; output stride 8/16/32 through dilation.

Feature keys are ``layer_1`` .. ``layer_17``: ``layer_i`` is the output of ``layers[i - 1]``. For width 1.0:
layer_8 16 ch stride 2, layer_9 24 ch stride 4, layer_10 40 ch stride 8, layer_12 96 ch stride 16, layer_14 320 ch
stride 32, layer_17 1280 ch stride 32 (before dilation). Widths are the paper's depths times the multiplier, rounded
to multiples of 8. The published 0.5 checkpoint predates torchvision's width-scaled stem and keeps a 32/16-channel
stem, so ``mnasnet0_5`` is built with that stem (its checkpoint then loads strictly, as torchvision patches it).
"""
import torch.nn as nn

from .build import BACKBONE_REGISTRY, OUTPUT_STRIDES, FeatureBackbone, check_dilation, finish_backbone

_URLS = {
    "mnasnet0_5": "https://download.pytorch.org/models/mnasnet0.5_top1_67.823-3ffadce67e.pth",
    "mnasnet0_75": "https://download.pytorch.org/models/mnasnet0_75-7090bc5f.pth",
    "mnasnet1_0": "https://download.pytorch.org/models/mnasnet1.0_top1_73.512-f206786ef8.pth",
    "mnasnet1_3": "https://download.pytorch.org/models/mnasnet1_3-a4c69d6f.pth",
}
_ALPHAS = {"mnasnet0_5": 0.5, "mnasnet0_75": 0.75, "mnasnet1_0": 1.0, "mnasnet1_3": 1.3}
_BN_MOMENTUM = 1 - 0.9997  # the TensorFlow default the published models were trained with
_DEPTHS = (32, 16, 24, 40, 80, 96, 192, 320)
# inverted-residual stacks: (kernel, stride, expansion, repeats), output depth index 2..7
_STACKS = ((3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1))


def _round_to_multiple_of(value, divisor=8, round_up_bias=0.9):
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded if rounded >= round_up_bias * value else rounded + divisor


class _InvertedResidual(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expansion, dilation=1):
        super().__init__()
        mid = cin * expansion
        self.apply_residual = cin == cout and stride == 1
        self.layers = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, momentum=_BN_MOMENTUM), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2 * dilation, dilation=dilation, groups=mid,
                      bias=False),
            nn.BatchNorm2d(mid, momentum=_BN_MOMENTUM), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout, momentum=_BN_MOMENTUM))

    def forward(self, x):
        return x + self.layers(x) if self.apply_residual else self.layers(x)


class MNASNet(FeatureBackbone, nn.Module):
    def __init__(self, alpha, replace_stride_with_dilation=(False, False, False), fixed_stem=False, num_classes=1000):
        super().__init__()
        depths = [_round_to_multiple_of(d * alpha) for d in _DEPTHS]
        stem0, stem1 = (32, 16) if fixed_stem else (depths[0], depths[1])
        layers = [nn.Conv2d(3, stem0, 3, 2, 1, bias=False), nn.BatchNorm2d(stem0, momentum=_BN_MOMENTUM),
                  nn.ReLU(inplace=True),
                  nn.Conv2d(stem0, stem0, 3, 1, 1, groups=stem0, bias=False),
                  nn.BatchNorm2d(stem0, momentum=_BN_MOMENTUM), nn.ReLU(inplace=True),
                  nn.Conv2d(stem0, stem1, 1, bias=False), nn.BatchNorm2d(stem1, momentum=_BN_MOMENTUM)]
        channels = [stem0, stem0, stem0, stem0, stem0, stem0, stem1, stem1]
        strides = [2] * 8
        # the stride-2 stacks reaching stride 8, 16, 32 are the ones DILATION may turn into dilation
        dilate_at = dict(zip((8, 16, 32), replace_stride_with_dilation))
        current, dilation, cin = 2, 1, stem1
        for (kernel, stride, expansion, repeats), cout in zip(_STACKS, depths[2:]):
            first_dilation = dilation
            if stride == 2 and dilate_at.get(current * 2, False):
                dilation, stride = dilation * 2, 1
            elif stride == 2:
                current *= 2
            blocks = [_InvertedResidual(cin, cout, kernel, stride, expansion, first_dilation)]
            blocks += [_InvertedResidual(cout, cout, kernel, 1, expansion, dilation) for _ in range(1, repeats)]
            layers.append(nn.Sequential(*blocks))
            channels.append(cout)
            strides.append(current)
            cin = cout
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280, momentum=_BN_MOMENTUM),
                   nn.ReLU(inplace=True)]
        channels += [1280] * 3
        strides += [current] * 3
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(1280, num_classes))
        self.out_channels = {f"layer_{i + 1}": c for i, c in enumerate(channels)}
        self.strides = {f"layer_{i + 1}": s for i, s in enumerate(strides)}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="sigmoid")
                nn.init.zeros_(m.bias)

    def stages(self):
        return [(f"layer_{i + 1}", layer) for i, layer in enumerate(self.layers)]


def _build(name, dilation, bn_momentum):
    model = MNASNet(_ALPHAS[name], check_dilation(dilation, name), fixed_stem=name == "mnasnet0_5")
    return finish_backbone(model, "mnasnet", _URLS[name], OUTPUT_STRIDES[tuple(dilation)], bn_momentum)


for _name in _URLS:
    BACKBONE_REGISTRY.register(_name)(_build)
