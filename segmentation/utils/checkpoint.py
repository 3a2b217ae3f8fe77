"""Checkpoints: durable atomic writes with clear disk errors, weights-only loading, finiteness checks."""
import contextlib
import errno
import glob
import logging
import os
from collections import Counter

import torch

logger = logging.getLogger("segmentation")

TMP_SUFFIX = ".tmp"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the file and the system error (e.g. ENOSPC)."""


def _os_error_in_chain(exc):
    """The first OSError in ``exc``'s cause/context chain (torch wraps the writer's error in RuntimeErrors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` durably and atomically: ``<path>.tmp`` is written and fsynced, renamed over
    ``path``, and the folder fsynced. A crash never leaves a truncated ``path``; on failure the temporary file is
    removed, ``path`` is untouched, and one CheckpointWriteError names the file and the system error."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + TMP_SUFFIX
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)  # a file object: the writer's OSError (and its errno) stays in the chain
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        cause = _os_error_in_chain(e)
        if cause is None:
            raise
        name = errno.errorcode.get(cause.errno, str(cause.errno))
        raise CheckpointWriteError(cause.errno, f"Could not write checkpoint '{path}': {cause.strerror} ({name}). "
                                   f"The previous '{os.path.basename(path)}' (if any) is intact; the temporary "
                                   f"file was removed.") from None
    _fsync_dir(folder)


def remove_orphaned_temporaries(folder):
    """Remove ``*.tmp`` files that an interrupted ``save_checkpoint`` (kill -9, power loss) left in ``folder``;
    returns their paths."""
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(folder), "*.pth*" + TMP_SUFFIX)):
        with contextlib.suppress(OSError):
            os.remove(tmp)
            removed.append(tmp)
    if removed:
        logger.info("Removed %d temporary file(s) of interrupted checkpoint writes: %s", len(removed),
                    ", ".join(os.path.basename(p) for p in removed))
    return removed


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


def _tensors(obj, prefix=""):
    """(name, tensor) of every tensor in nested dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}" if prefix else str(i))


def non_finite_tensors(obj):
    """Names of the floating-point tensors of ``obj`` (a state dict, or any nesting of dicts and lists) holding a
    NaN or an infinity. One reduction per tensor (used when saving and loading, not in the training step)."""
    named = [(n, t) for n, t in _tensors(obj) if t.is_floating_point() and t.numel()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t).all().cpu() for _, t in named])
    return [named[i][0] for i in (~finite).nonzero().flatten().tolist()]


def require_finite_weights(state, path):
    """Raise ValueError naming the tensors if the model state ``state`` read from ``path`` is not finite."""
    bad = non_finite_tensors(state)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"Checkpoint '{path}' has {len(bad)} tensor(s) with NaN or infinite values ({shown}); its "
                         f"outputs would be meaningless. Use an earlier checkpoint (checkpoint_<iteration>.pth).")
    return state


def compare_state_dicts(own, state):
    """(matched, missing, unexpected, mismatched) key lists of a checkpoint ``state`` against a model's ``own``
    state dict; ``mismatched`` holds keys present in both with different shapes."""
    matched = [k for k in own if k in state and tuple(state[k].shape) == tuple(own[k].shape)]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    return matched, missing, unexpected, mismatched


def _by_module(keys, depth=2):
    """{module prefix (``depth`` name parts): number of keys}."""
    return Counter(".".join(k.split(".")[:depth]) for k in keys)


def describe_state_mismatch(own, state, missing, unexpected, mismatched, limit=5):
    """Lines naming what differs (the lists of ``compare_state_dicts``): the first mismatching keys with both
    shapes, then missing and unexpected keys grouped by module (``decoder.semantic_head: 4 tensor(s)``)."""
    lines = [f"  shape differs  {k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
             for k in mismatched[:limit]]
    if len(mismatched) > limit:
        lines.append(f"  shape differs  ... and {len(mismatched) - limit} more")
    for what, keys in (("missing", missing), ("unexpected", unexpected)):
        for prefix, count in sorted(_by_module(keys).items()):
            lines.append(f"  {what:14s} {prefix}: {count} tensor(s)")
    return lines


def load_model_weights(model, state, path, strict=True, min_fraction=0.5):
    """Load ``state`` into ``model``. ``strict``: every key must match (ValueError naming the differences
    otherwise). Not strict: the tensors whose name and shape match are loaded and the rest is reported grouped by
    module; fewer than ``min_fraction`` of the model's values loaded is a ValueError (another architecture)."""
    own = model.state_dict()
    matched, missing, unexpected, mismatched = compare_state_dicts(own, state)
    # tensors that do not affect the outputs (a backbone's unused ImageNet classifier) may be absent
    unused = set(model.unused_state_keys()) if hasattr(model, "unused_state_keys") else set()
    absent_unused = [k for k in missing if k in unused]
    missing = [k for k in missing if k not in unused]
    if absent_unused:
        logger.info("%s has no value for %d tensors of the model that do not affect its outputs (e.g. %s); they "
                    "keep their initialisation.", path, len(absent_unused), absent_unused[0])
    details = describe_state_mismatch(own, state, missing, unexpected, mismatched)
    if strict and (missing or unexpected or mismatched):
        raise ValueError(f"Checkpoint '{path}' does not fit the configured model ({len(matched)} of {len(own)} "
                         f"tensors match):\n" + "\n".join(details) + "\nCheck MODEL.* and DATASET.NUM_CLASSES "
                         "against the config the checkpoint was trained with.")
    total = sum(t.numel() for t in own.values())
    loaded = sum(own[k].numel() for k in matched)
    if loaded < min_fraction * total:
        raise ValueError(f"MODEL.WEIGHTS '{path}' initialises only {100 * loaded / max(total, 1):.0f}% of the "
                         f"model's values ({len(matched)} of {len(own)} tensors match): it is not a checkpoint of "
                         f"this architecture.\n" + "\n".join(details[:12]))
    model.load_state_dict({k: state[k] for k in matched}, strict=False)
    if details:
        logger.warning("%s: loaded %d of %d tensors (%.0f%% of the values); the rest keeps its "
                       "initialisation:\n%s", path, len(matched), len(own), 100 * loaded / max(total, 1),
                       "\n".join(details))
    else:
        logger.info("%s: loaded all %d tensors of the model%s.", path, len(matched),
                    f" that affect its outputs ({len(absent_unused)} others absent)" if absent_unused else "")
    return matched
