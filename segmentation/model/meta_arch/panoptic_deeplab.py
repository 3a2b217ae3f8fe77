"""Panoptic-DeepLab, DeepLabV3 and DeepLabV3+ meta-architectures."""
from ..decoder import DeepLabV3Decoder, DeepLabV3PlusDecoder, PanopticDeepLabDecoder
from ..loss import build_loss
from .base import META_ARCH_REGISTRY, SegmentationModel, _init


def _add_semantic_loss(model, cfg):
    s = cfg.LOSS.SEMANTIC
    model._register_loss("semantic", build_loss(s, s.IGNORE), "semantic", "semantic", "semantic_weights", s.WEIGHT)


@META_ARCH_REGISTRY.register("panoptic_deeplab")
class PanopticDeepLab(SegmentationModel):
    """Outputs ``semantic`` logits [N, C, H, W], ``center`` heatmap [N, 1, H, W] and ``offset`` [N, 2, H, W] (y, x
    pixels from each pixel to its instance centre); the instance branch needs MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE."""

    def __init__(self, cfg, backbone):
        super().__init__(backbone, cfg)
        self.decoder = _init(PanopticDeepLabDecoder(cfg, cfg.DATASET.NUM_CLASSES))
        _add_semantic_loss(self, cfg)
        if cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE:
            keys = tuple(cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.CLASS_KEY)
            if keys != ("center", "offset"):
                raise ValueError(f"MODEL.PANOPTIC_DEEPLAB.INSTANCE.CLASS_KEY must be ('center', 'offset'), got {keys}.")
            c, o = cfg.LOSS.CENTER, cfg.LOSS.OFFSET
            self._register_loss("center", build_loss(c), "center", "center", "center_weights", c.WEIGHT)
            self._register_loss("offset", build_loss(o), "offset", "offset", "offset_weights", o.WEIGHT)


class SemanticDeepLab(SegmentationModel):
    """Semantic segmentation only: ``semantic`` logits [N, C, H, W] from the decoder class ``decoder_class``."""

    decoder_class = None

    def __init__(self, cfg, backbone):
        super().__init__(backbone, cfg)
        self.decoder = _init(self.decoder_class(cfg, cfg.DATASET.NUM_CLASSES))
        _add_semantic_loss(self, cfg)


@META_ARCH_REGISTRY.register("deeplabv3")
class DeepLabV3(SemanticDeepLab):
    """ASPP and a classifier: ``semantic`` logits [N, C, H, W]."""

    decoder_class = DeepLabV3Decoder


@META_ARCH_REGISTRY.register("deeplabv3plus")
class DeepLabV3Plus(SemanticDeepLab):
    """ASPP with one low-level skip: ``semantic`` logits [N, C, H, W]."""

    decoder_class = DeepLabV3PlusDecoder
