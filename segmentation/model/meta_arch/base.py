"""Meta-architectures: backbone + decoder + losses; forward returns a plain dict of tensors."""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...utils.registry import Registry
from ..decoder import init_decoder_weights

META_ARCH_REGISTRY = Registry(
    "META_ARCH_REGISTRY",
    contract=("A class built as cls(cfg, backbone) -> nn.Module; forward(images [N, 3, H, W], targets=None) returns a "
              "dict of output tensors at input resolution, plus 'loss' (weighted total) and '<name>_loss' "
              "(unweighted components) when targets are given."),
    config_key="MODEL.META_ARCHITECTURE",
)


class SegmentationModel(nn.Module):
    """Shared logic: run the decoder, upsample every output to the input size, compute the configured losses.

    Subclasses set ``self.decoder`` and ``self.loss_terms``: a list of (output key, loss module, target key,
    weight key or None, loss weight).
    """

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.loss_terms = []

    def _register_loss(self, name, module, output_key, target_key, weight_key, weight):
        self.add_module(f"{name}_criterion", module)
        self.loss_terms.append((name, output_key, target_key, weight_key, weight))

    def forward(self, images, targets=None):
        outputs = self.decoder(self.backbone(images))
        outputs = self.upsample(outputs, images.shape[-2:])
        if targets is not None:
            # losses in float32 even under autocast (mixed precision covers the network only)
            with torch.autocast(images.device.type, enabled=False):
                outputs.update(self.losses({k: v.float() for k, v in outputs.items()}, targets))
        return outputs

    @staticmethod
    def upsample(outputs, size):
        """Bilinear upsampling to ``size``; offsets (pixels) are scaled by the same factor."""
        result = OrderedDict()
        for key, value in outputs.items():
            scale = size[0] / value.shape[-2]
            value = F.interpolate(value, size=size, mode="bilinear", align_corners=False)
            result[key] = value * scale if key == "offset" else value
        return result

    def losses(self, outputs, targets):
        """Dict of unweighted ``<name>_loss`` components and their weighted sum ``loss``."""
        out, total = {}, 0.0
        for name, output_key, target_key, weight_key, weight in self.loss_terms:
            criterion = getattr(self, f"{name}_criterion")
            target = targets[target_key]
            if output_key == "center" and target.dim() == 3:
                target = target[:, None]
            value = criterion(outputs[output_key], target, targets[weight_key] if weight_key else None)
            out[f"{name}_loss"] = value
            total = total + weight * value
        out["loss"] = total
        return out


def _init(decoder):
    init_decoder_weights(decoder)
    return decoder
