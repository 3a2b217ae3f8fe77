"""What an ablation runs: a base config, overrides shared by every run, named variants and/or a grid, seeds.

The grid file (YAML; every key optional, the command line adds to it)::

    base: configs/synthetic/om_panoptic_deeplab_mbv2_synthetic.yaml   # the base config (--cfg overrides it)
    opts: {TRAIN.MAX_ITER: 200, TEST.EVAL_PERIOD: 50}                 # overrides of every run
    seeds: 3                                                          # SEED 0 .. N-1 for every variant
    metric: PQ                                                        # the validation metric compared
    reference: base                                                   # the variant the others are compared to
    variants:                                                         # named variants: name -> overrides
      base: {}
      push-pull: {OM.MIXINS: [push-pull]}
    grid:                                                             # crossed with every variant
      LOSS.OFFSET.WEIGHT: [0.01, 0.02]
    search:                                                           # --search optuna: the space
      OM.MIXINS: {choices: [[], [push-pull], [huber-offsets]]}
      LOSS.CENTER.WEIGHT: {low: 50.0, high: 400.0, log: true}

Values are what the key takes in a config file (a list for a tuple). A variant's folder is its name; without named
variants, the name is made from its grid overrides (``LOSS.OFFSET.WEIGHT=0.02``).
"""
import ast
import hashlib
import itertools
import os
import re
from dataclasses import dataclass, field

import yaml

SPEC_KEYS = ("base", "opts", "seeds", "metric", "reference", "variants", "grid", "search")


class SpecError(ValueError):
    """The grid file or the command line's grid is wrong (the message says what and how to fix it)."""


def format_value(value):
    """A value as ``KEY VALUE`` overrides write it (yacs parses it back): lists as Python tuples."""
    if isinstance(value, (list, tuple)):
        return "(" + "".join(f"{format_value(v)}, " for v in value).rstrip(" ") + ")" if value else "()"
    if isinstance(value, str):
        return repr(value)
    return repr(value)


def _short(value):
    if isinstance(value, (list, tuple)):
        return "+".join(_short(v) for v in value) or "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 200.0 -> 200, as it was written
    return str(value)


def folder_name(overrides):
    """A folder name from overrides: ``KEY=value`` joined by ``__`` ("base" without any), characters outside
    ``[A-Za-z0-9._=+-]`` replaced, long names shortened with a hash of the full name."""
    if not overrides:
        return "base"
    name = "__".join(f"{k}={_short(v)}" for k, v in overrides.items())
    name = re.sub(r"[^A-Za-z0-9._=+-]", "-", name)
    if len(name) > 100:
        name = name[:90] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


@dataclass
class Variant:
    """One point of the grid: its folder name and its overrides (config key -> value)."""
    name: str
    overrides: dict = field(default_factory=dict)


@dataclass
class AblationSpec:
    """The parsed grid: base config path, shared overrides, variants, seeds, compared metric, reference variant and
    the Optuna search space (key -> {choices} or {low, high[, log, step]})."""
    base: str
    opts: dict = field(default_factory=dict)
    variants: list = field(default_factory=list)
    seeds: int = 1
    metric: str = "PQ"
    reference: str = ""
    search: dict = field(default_factory=dict)
    source: str = ""  # the grid file, if any

    def reference_variant(self):
        return self.reference or (self.variants[0].name if self.variants else "base")

    def shared_opts(self):
        return [x for k, v in self.opts.items() for x in (k, format_value(v))]

    def to_dict(self):
        return {"base": self.base, "opts": self.opts, "seeds": self.seeds, "metric": self.metric,
                "reference": self.reference_variant(),
                "variants": {v.name: v.overrides for v in self.variants}, "search": self.search}


def _parse_value(text):
    """A command-line value: a Python literal (``0.02``, ``1e-3``, ``()``, ``('push-pull',)``, ``True``) or, failing
    that, YAML with bare words (``push-pull``, ``(push-pull, huber-offsets)``); tuples become lists."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        text = text.strip()
        if text.startswith("(") and text.endswith(")"):
            text = "[" + text[1:-1] + "]"
        value = yaml.safe_load(text)
    return list(value) if isinstance(value, tuple) else value


def _checked(overrides, where):
    """``overrides`` with every key checked against the default config, and numbers given for float keys made
    floats (yacs refuses an int for a float key)."""
    from ..config import get_default_config
    cfg = get_default_config()
    out = {}
    for key, value in (overrides or {}).items():
        node = cfg
        for part in key.split("."):
            if not hasattr(node, "keys") or part not in node:
                raise SpecError(f"{where}: '{key}' is not a config key (see segmentation/config/defaults.py).")
            node = node[part]
        if isinstance(node, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:  # YAML reads 200 as an int and 1e-3 as a string
                value = float(value)
            except ValueError:
                raise SpecError(f"{where}: '{key}' takes a number, got {value!r}.") from None
        out[key] = value
    return out


def load_spec(path=None, base=None, vary=(), seeds=None, metric=None, opts=()):
    """The spec of a grid file (``path``, optional) completed by the command line: ``base`` config, ``vary`` as
    ``[KEY, V1, V2, ...]`` lists (grid axes), ``seeds``, ``metric``, ``opts`` as ``KEY VALUE`` pairs."""
    data = {}
    if path:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise SpecError(f"{path}: expected a mapping with some of the keys {', '.join(SPEC_KEYS)}.")
        unknown = sorted(set(data) - set(SPEC_KEYS))
        if unknown:
            raise SpecError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(SPEC_KEYS)}.")
        if data.get("base") and not os.path.isabs(data["base"]) and not os.path.exists(data["base"]):
            beside = os.path.join(os.path.dirname(path), data["base"])
            data["base"] = os.path.normpath(beside) if os.path.exists(beside) else data["base"]
    base = base or data.get("base")
    if not base:
        raise SpecError("No base config: give --cfg FILE or 'base:' in the grid file.")
    shared = dict(data.get("opts") or {})
    if len(opts) % 2:
        raise SpecError(f"Overrides come in KEY VALUE pairs; got {len(opts)} words: {' '.join(opts)}.")
    shared.update({k: _parse_value(v) for k, v in zip(opts[::2], opts[1::2])})
    shared = _checked(shared, "opts")
    grid = dict(data.get("grid") or {})
    for axis in vary:
        if len(axis) < 2:
            raise SpecError(f"--vary needs a key and at least one value, got {' '.join(axis)}.")
        grid[axis[0]] = [_parse_value(v) for v in axis[1:]]
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"grid: '{key}' needs a non-empty list of values, got {values!r}.")
        grid[key] = [_checked({key: v}, "grid")[key] for v in values]
    named = data.get("variants") or {}
    if not isinstance(named, dict):
        raise SpecError("variants: expected a mapping of names to overrides, e.g. {base: {}, push-pull: "
                        "{OM.MIXINS: [push-pull]}}.")
    for name, overrides in named.items():
        if not re.fullmatch(r"[A-Za-z0-9._=+-]+", str(name)):
            raise SpecError(f"variants: '{name}' cannot be a folder name; use letters, digits and ._=+-.")
        named[name] = _checked(overrides, f"variants: {name}")
    search = data.get("search") or {}
    _checked({k: None for k in search}, "search")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
    variants = []
    for name, overrides in (named.items() if named else [(None, {})]):
        for combo in combos:
            merged = {**(overrides or {}), **combo}
            label = name if name is not None else folder_name(combo)
            if name is not None and combo:
                label = f"{name}__{folder_name(combo)}"
            variants.append(Variant(label, merged))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise SpecError(f"Two variants share a folder name: {sorted(n for n in names if names.count(n) > 1)[0]}.")
    seeds = seeds if seeds is not None else data.get("seeds", 1)
    spec = AblationSpec(base=base, opts=shared, variants=variants, seeds=int(seeds),
                        metric=metric or data.get("metric") or "PQ", reference=str(data.get("reference") or ""),
                        search=search, source=path or "")
    if spec.seeds < 1:
        raise SpecError(f"seeds must be at least 1, got {spec.seeds}.")
    if spec.reference and spec.reference not in names:
        raise SpecError(f"reference: '{spec.reference}' is not a variant; variants: {', '.join(names)}.")
    return spec
