"""Checkpoints: atomic writes, weights-only loading."""
import os

import torch


def save_checkpoint(state, path):
    """torch.save to a temporary file, then rename: a crash never leaves a truncated checkpoint."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint '{path}' does not exist.")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_state(checkpoint):
    """The model's state dict from a checkpoint dict or a bare state dict."""
    if isinstance(checkpoint, dict):
        for key in ("model", "state_dict"):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return checkpoint[key]
    return checkpoint
