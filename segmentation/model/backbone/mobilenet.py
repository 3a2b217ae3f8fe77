"""MobileNetV2 with torchvision parameter names; output stride 8/16/32 through dilation.

Feature keys are ``layer_1`` .. ``layer_19``: ``layer_i`` is the output of ``features[i - 1]`` (as the original
repository names them): layer_2 16 ch stride 2, layer_4 24 ch stride 4, layer_7 32 ch stride 8, layer_14 96 ch
stride 16, layer_18 320 ch stride 32, layer_19 1280 ch stride 32 (before dilation).
"""
import torch.nn as nn

from .build import BACKBONE_REGISTRY, OUTPUT_STRIDES, FeatureBackbone, check_dilation, finish_backbone

_URL = "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, kernel=3, stride=1, groups=1, dilation=1):
        pad = (kernel - 1) // 2 * dilation
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand_ratio, dilation=1):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers = [ConvBNReLU(cin, hidden, kernel=1)] if expand_ratio != 1 else []
        layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(FeatureBackbone, nn.Module):
    # (expand ratio t, channels c, repeats n, stride s), torchvision's width-1.0 setting
    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]

    def __init__(self, replace_stride_with_dilation=(False, False, False), num_classes=1000):
        super().__init__()
        features = [ConvBNReLU(3, 32, stride=2)]
        channels, stride, dilation = [32], [2], 1
        current, cin = 2, 32
        # the stride-2 stages reaching stride 8, 16, 32 are the ones DILATION may turn into dilation
        dilate_at = {8: replace_stride_with_dilation[0], 16: replace_stride_with_dilation[1],
                     32: replace_stride_with_dilation[2]}
        for t, c, n, s in self.SETTING:
            for i in range(n):
                st = s if i == 0 else 1
                block_dilation = dilation
                if st == 2 and dilate_at.get(current * 2, False):
                    dilation *= 2
                    st = 1
                elif st == 2:
                    current *= 2
                features.append(InvertedResidual(cin, c, st, t, dilation=block_dilation if st == 1 and i == 0
                                                 else dilation))
                cin = c
                channels.append(c)
                stride.append(current)
        features.append(ConvBNReLU(cin, 1280, kernel=1))
        channels.append(1280)
        stride.append(current)
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        self.out_channels = {f"layer_{i + 1}": c for i, c in enumerate(channels)}
        self.strides = {f"layer_{i + 1}": s for i, s in enumerate(stride)}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def stages(self):
        return [(f"layer_{i + 1}", layer) for i, layer in enumerate(self.features)]


@BACKBONE_REGISTRY.register("mobilenet_v2")
def _build(name, dilation, bn_momentum):
    model = MobileNetV2(check_dilation(dilation, name))
    return finish_backbone(model, "mobilenet_v2", _URL, OUTPUT_STRIDES[tuple(dilation)], bn_momentum)
