"""Run-time helpers shared by training, evaluation and inference: the device, host memory, seeds and RNG states,
and the run folder (its file names and ``run.json``, the record of how a run ended)."""
import json
import os
import random

import numpy as np
import torch

from ..config import dump_config
from . import comm
from .memory import keep_freed_memory

CHECKPOINT_NAME = "checkpoint.pth.tar"  # the last (periodic or final) training state of OUTPUT_DIR
FINAL_NAME = "final_state.pth"  # the model after the last iteration, written once training finished
RUN_RECORD_NAME = "run.json"  # git revision, versions and how the run ended (status, iteration, reason)


def configure_backends(cfg):
    """CUDNN.BENCHMARK / DETERMINISTIC / ENABLED into torch.backends.cudnn (read by CUDA convolutions only)."""
    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK
    torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC
    torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED


def configure_runtime(cfg, device):
    """The process-wide settings of the config: CUDNN.* (configure_backends) and, on CPU with
    CPU_KEEP_FREED_MEMORY, keeping freed host memory for reuse (``utils.memory.keep_freed_memory``)."""
    configure_backends(cfg)
    if device.type == "cpu" and cfg.CPU_KEEP_FREED_MEMORY:
        keep_freed_memory()


def resolve_device(cfg):
    if cfg.DEVICE == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.DEVICE == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE is 'cuda' but no CUDA device is available; set DEVICE auto or cpu.")
    if cfg.DEVICE not in ("cpu", "cuda"):
        raise ValueError(f"Unknown DEVICE '{cfg.DEVICE}'; valid: auto, cpu, cuda.")
    return torch.device(cfg.DEVICE)


def seed_everything(seed):
    if seed < 0:
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states():
    """RNG states in types that ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     cached), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_run_record(cfg, output_dir, **fields):
    """The resolved config (plain YAML), the git revision, the package versions and ``fields`` (e.g. status)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "config.yaml"), "w") as f:
        f.write(dump_config(cfg))
    import importlib.metadata
    import platform
    import subprocess
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    packages = {}
    for name in ("torch", "numpy", "opencv-python-headless", "pillow", "yacs", "cityscapesscripts", "pycocotools"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    record = {"git_revision": rev, "python": platform.python_version(), "packages": packages,
              "world_size": comm.get_world_size(), **fields}
    _write_json_atomically(os.path.join(output_dir, RUN_RECORD_NAME), record)


def _write_json_atomically(path, data):
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2)
    os.replace(path + ".tmp", path)


def update_run_record(output_dir, **fields):
    """Set ``fields`` in OUTPUT_DIR/run.json (e.g. ``status``, ``iteration``, ``reason``)."""
    path = os.path.join(output_dir, RUN_RECORD_NAME)
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = {}
    record.update(fields)
    _write_json_atomically(path, record)


def read_run_record(folder):
    """OUTPUT_DIR/run.json of ``folder`` as a dict, or None when it is missing or unreadable."""
    try:
        with open(os.path.join(folder, RUN_RECORD_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def describe_run(record):
    """'<status> at iteration <i> of <n> (<reason>)' of a run record."""
    state = f"{record.get('status')} at iteration {record.get('iteration', '?')} of {record.get('max_iter', '?')}"
    return state + (f" ({record['reason']})" if record.get("reason") else "")
