"""Strict config loading: ``_BASE_`` inheritance, unknown keys are errors naming the closest valid keys."""
import difflib
import logging
import os
from collections.abc import Sequence

import yaml
from yacs.config import CfgNode as CN

from .defaults import COMPATIBILITY_KEYS, CONFIG_VERSION, get_default_config

logger = logging.getLogger("segmentation")

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


# the types a config value may have (yacs' own), as error messages name them
_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "True or False", tuple: "a tuple",
          list: "a list"}


def _typed(value, default, key, source):
    """``value`` (a YAML value or a command-line string) decoded as yacs decodes it, for the key whose default is
    ``default``: accepted as yacs accepts it (the same type, None either way, list for tuple and back), and an int
    where the default is a float becomes that float (``SOLVER.WEIGHT_DECAY 0``); anything else is a ConfigError
    saying what the key takes."""
    if isinstance(default, CN):
        raise ConfigError(f"Config key '{key}' (in {source}) is a group of keys; set its keys (e.g. "
                          f"{key}.{next(iter(default))}), not {value!r}.")
    value = CN._decode_cfg_value(value)
    if type(value) is int and type(default) is float:
        return float(value)
    if {type(value), type(default)} == {list, tuple}:  # YAML has only lists: the default's kind of sequence
        return type(default)(value)
    kind_ok = type(value) in _KINDS or value is None  # not a dict, a set, ...
    if not (kind_ok and (type(value) is type(default) or value is None or default is None)):
        raise ConfigError(f"Config key '{key}' (in {source}) takes {_KINDS.get(type(default), type(default).__name__)} "
                          f"(default {default!r}), got {value!r} ({_KINDS.get(type(value), type(value).__name__)}).")
    return value


def _assign(data, cfg):
    """Write the typed values of ``data`` (checked by ``_check_keys``) into ``cfg`` (an error if it is frozen)."""
    for key, value in data.items():
        if isinstance(cfg[key], CN) and isinstance(value, dict):
            _assign(value, cfg[key])
        else:
            setattr(cfg, key, value)


def _check_keys(data, cfg, source, root, prefix=""):
    """Raise ConfigError for an unknown key or a value of the wrong type; decode and type every value in place."""
    for key, value in data.items():
        full = prefix + key
        if key not in cfg:
            raise _unknown_key_error(full, root, source)
        if isinstance(cfg[key], CN) and isinstance(value, dict):
            _check_keys(value, cfg[key], source, root, full + ".")
        else:
            data[key] = _typed(value, cfg[key], full, source)


def _read_yaml(path, seen=()):
    if not os.path.isfile(path):
        raise ConfigError(f"Config file '{path}' does not exist.")
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"Config file '{path}' inherits from itself through _BASE_.")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"Config file '{path}'{line} is not valid plain YAML: {problem}. Tags such as !!python "
                          f"are not accepted; write plain values.") from None
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


def _upgrade_1_to_2(data):
    """Version 1 had no MODEL.ALIGN_CORNERS / TEST.PAD_TO_CROP_SIZE and behaved as if both were False."""
    data.setdefault("MODEL", {}).setdefault("ALIGN_CORNERS", False)
    data.setdefault("TEST", {}).setdefault("PAD_TO_CROP_SIZE", False)


# version v -> the function that turns a file of version v into one of version v + 1 (in place)
UPGRADES = {1: _upgrade_1_to_2}


def upgrade(data, path):
    """Bring the YAML mapping of a file stating an older VERSION to CONFIG_VERSION (a file without VERSION is read
    as the current version); a newer VERSION is an error."""
    version = data.get("VERSION")
    if version is None or version == CONFIG_VERSION:
        return data
    if not isinstance(version, int) or version > CONFIG_VERSION or version < min(UPGRADES):
        raise ConfigError(f"Config file '{path}' states VERSION {version!r}; this repository reads versions "
                          f"{min(UPGRADES)} to {CONFIG_VERSION} (a newer file needs a newer repository).")
    for v in range(version, CONFIG_VERSION):
        UPGRADES[v](data)
    data["VERSION"] = CONFIG_VERSION
    logger.info("Config file %s is of version %d: upgraded to version %d (segmentation/config/loader.py UPGRADES).",
                path, version, CONFIG_VERSION)
    return data


def warn_compatibility_keys(cfg):
    """A warning for every key of COMPATIBILITY_KEYS set to another value than its default: nothing reads it."""
    defaults = get_default_config()
    for key, reason in COMPATIBILITY_KEYS.items():
        node, default = cfg, defaults
        for part in key.split("."):
            node, default = node[part], default[part]
        if node != default:
            logger.warning("%s is kept for compatibility with the original's config files and not read (%s).", key,
                           reason)


def merge_config_file(cfg, path):
    """Merge a YAML file (with its ``_BASE_`` chain, upgraded from an older VERSION) into ``cfg``; unknown keys raise
    ConfigError."""
    data = upgrade(_read_yaml(path), path)
    _check_keys(data, cfg, path, cfg)
    _assign(data, cfg)


def merge_opts(cfg, opts):
    """Merge command-line ``KEY VALUE`` pairs into ``cfg``; unknown keys raise ConfigError."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"Overrides must be KEY VALUE pairs; got an odd number of items: {opts}.")
    for key, value in zip(opts[0::2], opts[1::2]):
        parent, node = None, cfg
        for part in key.split("."):
            if not isinstance(node, CN) or part not in node:
                raise _unknown_key_error(key, cfg, "command-line overrides")
            parent, node = node, node[part]
        setattr(parent, part, _typed(value, node, key, "command-line overrides"))


def _shipped_config_dirs():
    """Where the shipped configs are: the installed package's ``segmentation.configs`` and, in a source checkout,
    the repository's ``configs/``."""
    dirs = []
    try:
        from importlib.resources import files
        dirs.append(str(files("segmentation.configs")))
    except (ModuleNotFoundError, TypeError):  # not installed: a source checkout
        pass
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
    return dirs + [checkout]


def resolve_config_path(path: str) -> str:
    """``path`` if it exists, else the shipped config of that name (``cityscapes/x.yaml`` or ``configs/...``), so
    that an installed package finds its configs from any folder; a FileNotFoundError names where it looked."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    name = path[len("configs/"):] if path.startswith("configs/") else path
    candidates = list(dict.fromkeys(os.path.join(d, name) for d in _shipped_config_dirs()))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise ConfigError(f"Config file '{path}' does not exist (nor among the shipped configs: {', '.join(candidates)}).")


def load_config(path: str | None = None, opts: Sequence[str] | None = None, freeze: bool = True) -> CN:
    """Defaults, then ``path`` (if any: a file, or the name of a shipped config such as
    ``cityscapes/panoptic_deeplab_R50_os32_cityscapes.yaml``), then ``opts``; returns a frozen CfgNode."""
    cfg = get_default_config()
    if path:
        merge_config_file(cfg, resolve_config_path(path))
    merge_opts(cfg, opts)
    if cfg.OM.BASE and not cfg.OM.NAME:
        import warnings
        warnings.warn("OM.BASE is deprecated; use OM.NAME.", DeprecationWarning, stacklevel=2)
        cfg.OM.NAME = cfg.OM.BASE
    validate_config(cfg)
    warn_compatibility_keys(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def _positive_pair(value):
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


def validate_config(cfg):
    """Values that would fail late (at the first batch, or never): raise ConfigError naming the key and the fix."""
    if cfg.TRAIN.MAX_ITER < 1:
        raise ConfigError(f"TRAIN.MAX_ITER must be at least 1, got {cfg.TRAIN.MAX_ITER}.")
    if cfg.TRAIN.IMS_PER_BATCH < 1 or cfg.TRAIN.ACCUMULATE_STEPS < 1:
        raise ConfigError(f"TRAIN.IMS_PER_BATCH and TRAIN.ACCUMULATE_STEPS must be at least 1, got "
                          f"{cfg.TRAIN.IMS_PER_BATCH} and {cfg.TRAIN.ACCUMULATE_STEPS}.")
    for key in ("DATASET.CROP_SIZE", "DATASET.SYNTHETIC.IMAGE_SIZE", "TEST.CROP_SIZE"):
        node, leaf = cfg, key.split(".")
        for part in leaf:
            node = node[part]
        if not _positive_pair(node):
            raise ConfigError(f"{key} must be two positive integers (height, width), e.g. (512, 1024); got "
                              f"{node!r}.")
    if len(cfg.DATASET.STD) != 3 or any(v <= 0 for v in cfg.DATASET.STD) or len(cfg.DATASET.MEAN) != 3:
        raise ConfigError(f"DATASET.MEAN must hold 3 values and DATASET.STD 3 positive values (RGB), got "
                          f"{tuple(cfg.DATASET.MEAN)} and {tuple(cfg.DATASET.STD)}.")
    if cfg.PRINT_FREQ < 1:
        raise ConfigError(f"PRINT_FREQ must be at least 1, got {cfg.PRINT_FREQ}.")
    if not cfg.DIST_TIMEOUT > 0:
        raise ConfigError(f"DIST_TIMEOUT (minutes) must be positive, got {cfg.DIST_TIMEOUT}.")
    if cfg.OM.MIXINS and not cfg.OM.NAME:
        raise ConfigError(f"OM.MIXINS is {list(cfg.OM.MIXINS)} but OM.NAME is empty, so no formulation would use "
                          f"them: set OM.NAME (e.g. panoptic-deeplab) or remove OM.MIXINS.")
    if "cpu-tensors" in cfg.OM.MIXINS and cfg.DATASET.PAN_ONLY:
        raise ConfigError("OM.MIXINS has 'cpu-tensors' (it reads the loader's CPU targets) but DATASET.PAN_ONLY is "
                          "True (the loader ships no targets): set DATASET.PAN_ONLY False.")
    if not 0 < cfg.OM.HARD_PIXEL_CENTERS.TOP_K_PERCENT <= 1:
        raise ConfigError(f"OM.HARD_PIXEL_CENTERS.TOP_K_PERCENT must be in (0, 1], got "
                          f"{cfg.OM.HARD_PIXEL_CENTERS.TOP_K_PERCENT}.")
    sigma = cfg.OM.SIZE_ADAPTIVE_SIGMA
    if not 0 < sigma.MIN_SIGMA <= sigma.MAX_SIGMA or not 0 < sigma.MIN_OVERLAP < 1:
        raise ConfigError(f"OM.SIZE_ADAPTIVE_SIGMA needs 0 < MIN_SIGMA <= MAX_SIGMA and 0 < MIN_OVERLAP < 1, got "
                          f"{sigma.MIN_SIGMA}, {sigma.MAX_SIGMA} and {sigma.MIN_OVERLAP}.")


class _PlainDumper(yaml.SafeDumper):
    """Plain YAML: no anchors or aliases (``&id001``) when two keys hold the same object."""

    def ignore_aliases(self, data):
        return True

    def represent_list(self, data):  # lists inline, mappings as blocks
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_PlainDumper.add_representer(list, _PlainDumper.represent_list)


def dump_config(cfg: CN) -> str:
    """``cfg`` as plain YAML text that ``load_config`` reads back (keys in definition order)."""
    def plain(node):
        return {k: plain(v) if isinstance(v, CN) else list(v) if isinstance(v, tuple) else v for k, v in node.items()}
    return yaml.dump(plain(cfg), Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, width=120)
