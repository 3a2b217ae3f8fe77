"""Strict config loading: ``_BASE_`` inheritance, unknown keys are errors naming the closest valid keys."""
import difflib
import os

import yaml
from yacs.config import CfgNode as CN

from .defaults import get_default_config

BASE_KEY = "_BASE_"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says which key and what is valid."""


def _flat_keys(node, prefix=""):
    keys = []
    for k, v in node.items():
        full = prefix + k
        keys.append(full)
        if isinstance(v, CN):
            keys.extend(_flat_keys(v, full + "."))
    return keys


def _unknown_key_error(key, cfg, source):
    valid = _flat_keys(cfg)
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    if not close:  # fall back to matching the last component only
        leaves = {k: k.rsplit(".", 1)[-1] for k in valid}
        near = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(set(leaves.values())), n=3)
        close = [k for k, leaf in leaves.items() if leaf in near]
    hint = f" Did you mean: {', '.join(close[:3])}?" if close else ""
    return ConfigError(f"Unknown config key '{key}' (in {source}).{hint} All keys are defined in "
                       f"segmentation/config/defaults.py.")


def _check_keys(data, cfg, source, root, prefix=""):
    for key, value in data.items():
        full = prefix + key
        if key not in cfg:
            raise _unknown_key_error(full, root, source)
        if isinstance(cfg[key], CN):
            if not isinstance(value, dict):
                raise ConfigError(f"Config key '{full}' (in {source}) is a group; give it a mapping, not {value!r}.")
            _check_keys(value, cfg[key], source, root, full + ".")


def _read_yaml(path, seen=()):
    if not os.path.isfile(path):
        raise ConfigError(f"Config file '{path}' does not exist.")
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"Config file '{path}' inherits from itself through _BASE_.")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping of keys, not {type(data).__name__}.")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    bases = [base] if isinstance(base, str) else list(base)
    merged = {}
    for b in bases:
        b_path = b if os.path.isabs(b) else os.path.join(os.path.dirname(path), b)
        _deep_update(merged, _read_yaml(b_path, seen + (path,)))
    _deep_update(merged, data)
    return merged


def _deep_update(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def merge_config_file(cfg, path):
    """Merge a YAML file (with its ``_BASE_`` chain) into ``cfg``; unknown keys raise ConfigError."""
    data = _read_yaml(path)
    _check_keys(data, cfg, path, cfg)
    try:
        cfg.merge_from_other_cfg(CN(data))
    except ValueError as e:
        raise ConfigError(f"In {path}: {e}") from None


def merge_opts(cfg, opts):
    """Merge command-line ``KEY VALUE`` pairs into ``cfg``; unknown keys raise ConfigError."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"Overrides must be KEY VALUE pairs; got an odd number of items: {opts}.")
    for key in opts[0::2]:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, CN) or part not in node:
                raise _unknown_key_error(key, cfg, "command-line overrides")
            node = node[part]
    try:
        cfg.merge_from_list(opts)
    except ValueError as e:
        raise ConfigError(f"In command-line overrides: {e}") from None


def load_config(path=None, opts=None, freeze=True):
    """Defaults, then ``path`` (if any), then ``opts``; returns a frozen CfgNode."""
    cfg = get_default_config()
    if path:
        merge_config_file(cfg, path)
    merge_opts(cfg, opts)
    if cfg.OM.BASE and not cfg.OM.NAME:
        import warnings
        warnings.warn("OM.BASE is deprecated; use OM.NAME.", DeprecationWarning, stacklevel=2)
        cfg.OM.NAME = cfg.OM.BASE
    if freeze:
        cfg.freeze()
    return cfg
