"""Panoptic-DeepLab with modular output mathematics (ModulOM)."""
__version__ = "0.1.0"


def __getattr__(name):
    """``segmentation.Predictor`` (the inference API), imported on first use so that ``import segmentation`` stays
    light."""
    if name in ("Predictor", "Prediction"):
        from .engine import predictor
        return getattr(predictor, name)
    raise AttributeError(f"module 'segmentation' has no attribute '{name}'")
