"""Loss modules (``LOSS_REGISTRY``)."""
from .criterion import LOSS_REGISTRY, DeepLabCE, OhemCE, RegularCE, WeightedL1, WeightedMSE, build_loss

__all__ = ["LOSS_REGISTRY", "DeepLabCE", "OhemCE", "RegularCE", "WeightedL1", "WeightedMSE", "build_loss"]
