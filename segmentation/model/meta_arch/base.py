"""Meta-architectures: backbone + decoder + losses; forward returns a plain dict of tensors."""
from collections import OrderedDict
from collections.abc import Sequence

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


def upsample(outputs: dict, size: Sequence[int], align_corners: bool) -> OrderedDict:
    """Bilinear upsampling of every output to ``size``; offsets (pixels) are scaled by the same factor: (H - 1) /
    (h - 1) with ``align_corners`` (the original floors it; equal for its sizes k * stride + 1), H / h without."""
    result = OrderedDict()
    for key, value in outputs.items():
        h = value.shape[-2]
        scale = (size[0] - 1) / max(h - 1, 1) if align_corners else size[0] / h
        value = F.interpolate(value, size=size, mode="bilinear", align_corners=align_corners)
        result[key] = value * scale if key == "offset" else value
    return result


def pad_test_images(images: torch.Tensor, crop_size: Sequence[int] | None = None, divisor: int = 32) -> torch.Tensor:
    """Zero-pad normalised images (zero is the mean colour) at the bottom/right: to ``crop_size`` when given
    (TEST.PAD_TO_CROP_SIZE, the original's test padding; a larger image goes to crop_size plus a multiple of
    ``divisor``, which keeps the crop size's alignment), otherwise to a multiple of ``divisor``."""
    def round_up(n):
        return n + -n % divisor

    h, w = images.shape[-2:]
    if crop_size is None:
        th, tw = round_up(h), round_up(w)
    else:
        th, tw = (c + round_up(max(n - c, 0)) for n, c in zip((h, w), crop_size))
    return F.pad(images, (0, tw - w, 0, th - h)) if (th, tw) != (h, w) else images


class SegmentationModel(nn.Module):
    """Shared logic: run the decoder, upsample every output to the input size, compute the configured losses.

    Subclasses set ``self.decoder`` and ``self.loss_terms``: a list of (output key, loss module, target key,
    weight key or None, loss weight).
    """

    def __init__(self, backbone, cfg):
        super().__init__()
        self.backbone = backbone
        self.loss_terms = []
        self.align_corners = cfg.MODEL.ALIGN_CORNERS
        # test images are padded to this size (None: to a multiple of 32), see pad_test_images
        self.test_crop_size = tuple(cfg.TEST.CROP_SIZE) if cfg.TEST.PAD_TO_CROP_SIZE else None
        self.channels_last = cfg.MODEL.CHANNELS_LAST

    def unused_state_keys(self):
        """State-dict keys that do not affect the outputs (see FeatureBackbone.unused_state_keys)."""
        return [f"backbone.{key}" for key in self.backbone.unused_state_keys()]

    def _register_loss(self, name, module, output_key, target_key, weight_key, weight):
        self.add_module(f"{name}_criterion", module)
        self.loss_terms.append((name, output_key, target_key, weight_key, weight))

    def forward(self, images, targets=None):
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        outputs = self.decoder(self.backbone(images))
        outputs = upsample(outputs, images.shape[-2:], self.align_corners)
        if self.channels_last:  # the OM, the losses and the decoding view the maps as contiguous NCHW
            outputs = {k: v.contiguous() for k, v in outputs.items()}
        if targets is not None:
            # losses in float32 even under autocast (mixed precision covers the network only)
            with torch.autocast(images.device.type, enabled=False):
                outputs.update(self.losses({k: v.float() for k, v in outputs.items()}, targets))
        return outputs

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
