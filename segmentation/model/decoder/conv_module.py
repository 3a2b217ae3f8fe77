"""Small conv building blocks."""
import torch.nn as nn


def basic_conv(cin, cout, kernel, padding=0, dilation=1, bias=False):
    """Conv + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=bias),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def depthwise_separable_conv(cin, cout, kernel=5, padding=2):
    """Depthwise kxk conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cin, kernel, padding=padding, groups=cin, bias=False), nn.BatchNorm2d(cin),
                         nn.ReLU(inplace=True), basic_conv(cin, cout, 1))


def init_decoder_weights(module, std=0.001):
    """Normal(0, std) conv weights and zero biases, unit BN: the original's decoder initialisation."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
