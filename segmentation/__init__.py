"""Panoptic-DeepLab with modular output mathematics (ModulOM)."""
__version__ = "0.1.0"
