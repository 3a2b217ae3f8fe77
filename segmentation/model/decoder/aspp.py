"""Atrous spatial pyramid pooling whose image pooling works at any input size."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv_module import CONV_REGISTRY, basic_conv


class ASPPPooling(nn.Module):
    """Global average pooling + 1x1 conv + ReLU, broadcast back to the input size.

    The original pools a fixed window matching the training crop and has to be reconfigured for other sizes; global
    pooling is the same on the training crop and valid at any test size.
    """

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(inplace=True))

    def forward(self, x):
        y = self.conv(F.adaptive_avg_pool2d(x, 1))
        return y.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """1x1 conv, three atrous 3x3 convs (``conv_type``: regular as in the original repository, or depthwise-separable
    as in the paper) and image pooling, concatenated and projected (+ dropout)."""

    def __init__(self, cin, cout, atrous_rates, dropout=0.5, conv_type="basic_conv"):
        super().__init__()
        atrous = CONV_REGISTRY.get(conv_type)
        branches = [basic_conv(cin, cout, 1)]
        branches += [atrous(cin, cout, 3, padding=r, dilation=r) for r in atrous_rates]
        branches.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(basic_conv(len(branches) * cout, cout, 1), nn.Dropout(dropout))

    def forward(self, x):
        return self.project(torch.cat([b(x) for b in self.convs], dim=1))
