"""Shared utilities: registries, logging, checkpoints, visualization."""
from .registry import Registry

__all__ = ["Registry"]
