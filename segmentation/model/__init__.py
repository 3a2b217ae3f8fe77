"""Models: backbones, decoders, losses, meta-architectures, post-processing."""
from .build import build_model

__all__ = ["build_model"]
