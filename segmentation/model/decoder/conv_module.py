"""Small conv building blocks, and the registry of conv types the decoders are built from."""
import torch.nn as nn

from ...utils.registry import Registry

CONV_REGISTRY = Registry(
    "CONV_REGISTRY",
    contract="A function (cin, cout, kernel, padding, dilation=1) -> nn.Module mapping [N, cin, H, W] to "
             "[N, cout, H, W] (conv, BN, ReLU); selected by MODEL.DECODER.CONV_TYPE (fuse convs and heads) and "
             "MODEL.DECODER.ASPP_CONV_TYPE (the atrous ASPP branches).",
    config_key="MODEL.DECODER.CONV_TYPE / MODEL.DECODER.ASPP_CONV_TYPE",
)


@CONV_REGISTRY.register("basic_conv")
def basic_conv(cin, cout, kernel, padding=0, dilation=1, bias=False):
    """Conv + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=bias),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@CONV_REGISTRY.register("depthwise_separable_conv")
def depthwise_separable_conv(cin, cout, kernel=5, padding=2, dilation=1):
    """Depthwise kxk conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cin, kernel, padding=padding, dilation=dilation, groups=cin, bias=False),
                         nn.BatchNorm2d(cin), nn.ReLU(inplace=True), basic_conv(cin, cout, 1))


def conv_stack(conv_type, cin, cout, kernel, padding, stack=1):
    """``stack`` convs of CONV_REGISTRY type ``conv_type``: cin -> cout, then cout -> cout."""
    if stack < 1:
        raise ValueError(f"MODEL.DECODER.CONV_STACK must be at least 1, got {stack}.")
    make = CONV_REGISTRY.get(conv_type)
    layers = [make(cin if i == 0 else cout, cout, kernel, padding) for i in range(stack)]
    return layers[0] if stack == 1 else nn.Sequential(*layers)


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
