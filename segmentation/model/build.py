"""Build the configured model."""
import logging

import torch
import torch.nn as nn

from .backbone import build_backbone
from .meta_arch import META_ARCH_REGISTRY

logger = logging.getLogger(__name__)


def _check_feature_keys(cfg, backbone):
    keys = [("MODEL.DECODER.FEATURE_KEY", cfg.MODEL.DECODER.FEATURE_KEY, "MODEL.DECODER.IN_CHANNELS",
             cfg.MODEL.DECODER.IN_CHANNELS)]
    if cfg.MODEL.META_ARCHITECTURE == "panoptic_deeplab":
        p = cfg.MODEL.PANOPTIC_DEEPLAB
        keys += [("MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_KEY", k, "MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_CHANNELS", c)
                 for k, c in zip(p.LOW_LEVEL_KEY, p.LOW_LEVEL_CHANNELS)]
    elif cfg.MODEL.META_ARCHITECTURE == "deeplabv3plus":
        p = cfg.MODEL.DEEPLABV3PLUS
        keys.append(("MODEL.DEEPLABV3PLUS.LOW_LEVEL_KEY", p.LOW_LEVEL_KEY, "MODEL.DEEPLABV3PLUS.LOW_LEVEL_CHANNELS",
                     p.LOW_LEVEL_CHANNELS))
    for key_name, key, ch_name, ch in keys:
        if key not in backbone.out_channels:
            raise ValueError(f"{key_name} '{key}' is not a feature of backbone '{cfg.MODEL.BACKBONE.NAME}'; its "
                             f"features are: {', '.join(backbone.out_channels)}.")
        if backbone.out_channels[key] != ch:
            raise ValueError(f"{ch_name} says {ch} channels for '{key}' but backbone '{cfg.MODEL.BACKBONE.NAME}' "
                             f"gives {backbone.out_channels[key]}.")
    return [key for _, key, _, _ in keys]


def build_network(cfg) -> nn.Module:
    """Backbone + meta-architecture from ``cfg`` (no output mathematics: ``segmentation.model.build_model`` adds it);
    MODEL.WEIGHTS initialises the tensors whose names and shapes match (an error when fewer than half of the model's
    values would be loaded; the rest is reported by module); a checkpoint of the original repository is converted
    (original_format)."""
    if cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.FOREGROUND_SEG:
        raise NotImplementedError("MODEL.PANOPTIC_DEEPLAB.INSTANCE.FOREGROUND_SEG is not implemented; set it False.")
    backbone = build_backbone(cfg)
    backbone.set_out_features(_check_feature_keys(cfg, backbone))
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg, backbone)
    if cfg.MODEL.WEIGHTS:
        from ..utils.checkpoint import load_checkpoint, load_model_weights
        from .original_format import model_state_dict
        state = model_state_dict(load_checkpoint(cfg.MODEL.WEIGHTS), cfg.MODEL.WEIGHTS)
        load_model_weights(model, state, cfg.MODEL.WEIGHTS, strict=False)
    if cfg.MODEL.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    return model


def compile_network(cfg, model):
    """MODEL.COMPILE: replace the network's ``forward`` by its torch.compile'd version (MODEL.COMPILE_MODE,
    _BACKEND, _FULLGRAPH), in place, so that module names and state dicts do not change; ``model`` may be the OM
    wrapper, whose network is compiled (the OM stays eager). Returns ``model``."""
    if not cfg.MODEL.COMPILE:
        return model
    net = getattr(model, "net", model)
    if not hasattr(net, "_eager_forward"):
        net._eager_forward = net.forward
        net.forward = torch.compile(net._eager_forward, mode=cfg.MODEL.COMPILE_MODE,
                                    backend=cfg.MODEL.COMPILE_BACKEND, fullgraph=cfg.MODEL.COMPILE_FULLGRAPH)
    return model
