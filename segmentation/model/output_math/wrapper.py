"""The model wrapper: the network's outputs and the batch become an OutputMath instance."""
from collections.abc import Sequence

import torch
import torch.nn as nn

from ..meta_arch.base import pad_test_images

BASE_FORMULATION = "panoptic-deeplab"  # what decodes a conventional model

def raw_batch(outputs, images, batch=None):
    """The raw batch an OM is built from: ``<output>_pred`` for every map of the network outputs (cropped to the
    image size, float32: the OM computes in float32), ``<key>_truth`` for every tensor of ``batch`` and ``image``."""
    h, w = images.shape[-2:]
    raw = {f"{k}_pred": v[..., :h, :w].float() for k, v in outputs.items()
           if isinstance(v, torch.Tensor) and v.dim() == 4}
    raw["image"] = images
    for key, value in (batch or {}).items():
        if key != "image" and isinstance(value, torch.Tensor):
            raw[f"{key}_truth"] = value.to(images.device, non_blocking=True)
    return raw


class OutputMathModel(nn.Module):
    """``forward(images, batch=None)`` runs the network and returns an instance of ``om_class`` whose raw batch
    holds ``<output>_pred`` for every network output, ``<key>_truth`` for every tensor of ``batch`` (e.g.
    ``panoptic_truth``) and ``image``. In evaluation mode images are padded (pad_test_images) and the outputs
    cropped back. The state dict is the network's, so checkpoints are interchangeable with the conventional path.
    """

    def __init__(self, net, om_class, cfg, metadata):
        super().__init__()
        self.net = net
        self.om_class = om_class
        self.cfg = cfg
        self.metadata = metadata
        self.loss_modules = {name: getattr(net, f"{name}_criterion") for name, *_ in net.loss_terms}

    def forward(self, images, batch=None):
        return self.build(self.net(images if self.training else pad_test_images(images, self.net.test_crop_size)),
                          images, batch)

    def build(self, outputs, images, batch=None):
        """The OM instance of network ``outputs`` computed elsewhere (e.g. by test-time augmentation)."""
        return self.om_class(raw_batch(outputs, images, batch), config=self.cfg, metadata=self.metadata,
                             device=images.device, losses=self.loss_modules,
                             release=not self.training and self.cfg.OM.RELEASE)

    def state_dict(self, *args, **kwargs):
        return self.net.state_dict(*args, **kwargs)

    def unused_state_keys(self):
        return self.net.unused_state_keys()

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


def output_math_view(model: nn.Module, cfg, metadata, extra_mixins: Sequence[str] = ()) -> "OutputMathModel":
    """``model`` read through output mathematics (the one place a model gets an OM for decoding): an
    OutputMathModel (OM.NAME) as it is, a conventional network through the base formulation; ``extra_mixins``
    (e.g. oracles for an evaluation) are added on top of OM.MIXINS."""
    if isinstance(model, OutputMathModel) and not extra_mixins:
        return model
    from .build import compose
    if isinstance(model, OutputMathModel):
        net, name, mixins = model.net, cfg.OM.NAME, tuple(cfg.OM.MIXINS)
    else:
        net, name, mixins = model, BASE_FORMULATION, ()
    return OutputMathModel(net, compose(name, mixins + tuple(extra_mixins)), cfg, metadata)


def build_model(cfg) -> nn.Module:
    """The configured model: the network (``build_network``: backbone, meta-architecture, MODEL.WEIGHTS) and, with
    OM.NAME, the OutputMathModel of OM.NAME + OM.MIXINS around it."""
    from ...data import get_metadata
    from ..build import build_network
    from .build import build_output_math_class
    net = build_network(cfg)
    if not cfg.OM.NAME:
        return net
    if cfg.MODEL.META_ARCHITECTURE != "panoptic_deeplab" or not cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE:
        raise ValueError("OM.NAME needs MODEL.META_ARCHITECTURE panoptic_deeplab with "
                         "MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE True.")
    return OutputMathModel(net, build_output_math_class(cfg), cfg, get_metadata(cfg))
