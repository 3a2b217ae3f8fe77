"""Models: backbones, decoders, losses, meta-architectures (``build_network``), post-processing, and the output
mathematics around them (``build_model``)."""
from .build import build_network, compile_network
from .output_math.wrapper import build_model

__all__ = ["build_model", "build_network", "compile_network"]
