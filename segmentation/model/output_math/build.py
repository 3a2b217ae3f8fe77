"""The registry of formulations (``OM_REGISTRY``) and the composition of a base with mixins.

Precedence: ``OM.MIXINS`` are applied in order on top of ``OM.NAME``, so **the last mixin listed wins** when two
override the same variable (it comes first in the method resolution order). The composed class is created once per
combination and named after its parts, e.g. ``PanopticDeepLab+OracleCenters+LearnableCenters``.
"""
import warnings
from collections.abc import Callable, Sequence

from ...utils.registry import Registry
from .core import OutputMath, variable_role

OM_REGISTRY = Registry(
    "OM_REGISTRY",
    contract=("An OutputMath subclass registered with @register_om(name, kind): kind 'base' for a complete "
              "formulation (OM.NAME), 'mixin' for a class overriding a few variables (OM.MIXINS). A class may list "
              "the registry names it cannot be combined with in OM_INCOMPATIBLE (with the reason in its docstring)."),
    config_key="OM.NAME / OM.MIXINS",
)

_COMPOSED = {}

# what a formulation is for: the variables training and decoding compute (a mixin must change one of them)
ROOTS = ("loss", "panoptic_pred")


class OMCompositionError(ValueError):
    """A base/mixin combination cannot be built; the message names the culprits."""


def register_om(name: str, kind: str, incompatible: Sequence[str] = ()) -> Callable[[type], type]:
    """Class decorator registering an OutputMath subclass under its config ``name``."""
    if kind not in ("base", "mixin"):
        raise ValueError(f"register_om kind must be 'base' or 'mixin', got {kind!r}.")

    def deco(cls):
        if not issubclass(cls, OutputMath):
            raise TypeError(f"{cls.__name__} must inherit OutputMath to be registered in OM_REGISTRY.")
        unnamed = [v for v in cls.variables() if variable_role(cls, v) is None]
        if unnamed:
            raise TypeError(f"{cls.__name__}: the role of {', '.join(unnamed)} is not declared: name a variable "
                            f"<quantity>_truth, <quantity>_pred or <quantity>_loss, or decorate it with "
                            f"@role('intermediate') (segmentation/model/output_math/core.py).")
        cls.OM_NAME, cls.OM_KIND = name, kind
        cls.OM_INCOMPATIBLE = tuple(incompatible)
        return OM_REGISTRY.register(name)(cls)
    return deco


def _names(kind):
    return [n for n in OM_REGISTRY.names() if OM_REGISTRY.get(n).OM_KIND == kind]


def _lookup(name, kind, key):
    if name not in OM_REGISTRY or OM_REGISTRY.get(name).OM_KIND != kind:
        raise OMCompositionError(f"Unknown {kind} '{name}' in {key}. Registered {kind}s: {', '.join(_names(kind))}.")
    return OM_REGISTRY.get(name)


def compose(base_name: str, mixin_names: Sequence[str] = ()) -> type[OutputMath]:
    """The OutputMath class made of the base ``base_name`` and the mixins ``mixin_names`` (last listed wins)."""
    from . import formulations  # noqa: F401  (registration of the built-in formulations)

    mixin_names = tuple(mixin_names)
    key = (base_name, mixin_names)
    if key in _COMPOSED:
        return _COMPOSED[key]
    base = _lookup(base_name, "base", "OM.NAME")
    mixins = [_lookup(m, "mixin", "OM.MIXINS") for m in mixin_names]
    dup = sorted({m for m in mixin_names if mixin_names.count(m) > 1})
    if dup:
        raise OMCompositionError(f"OM.MIXINS lists {', '.join(dup)} more than once.")
    parts = [base, *mixins]
    for a in parts:
        for b in parts:
            if b.OM_NAME in a.OM_INCOMPATIBLE:
                reason = (a.__doc__ or "").strip().splitlines()[0] if a.__doc__ else ""
                raise OMCompositionError(f"OM '{a.OM_NAME}' cannot be combined with '{b.OM_NAME}' "
                                         f"({a.__name__} declares them incompatible). {reason}")
    bases = tuple(reversed(mixins)) + (base,)
    name = "+".join(c.__name__ for c in parts)
    try:
        cls = type(name, bases, {"__module__": __name__, "_om_parts": key,
                                 "__doc__": f"{base.__name__} with mixins {', '.join(mixin_names) or '(none)'}."})
    except TypeError as e:
        raise OMCompositionError(f"Cannot linearise {', '.join(c.__name__ for c in bases)} (OM.NAME {base_name}, "
                                 f"OM.MIXINS {list(mixin_names)}): {e}") from None
    _check_overrides_reached(cls, base, mixins)
    _COMPOSED[key] = cls
    return cls


def _overrides(mixin, cls):
    """Variables ``mixin`` defines that ``cls`` (a composition holding it) also inherits from another part."""
    variables = set(cls.variables())
    return [n for n in vars(mixin) if n in variables
            and any(n in vars(c) for c in cls.__mro__ if c not in (mixin, OutputMath))]


def _check_overrides_reached(cls, base, mixins):
    """Refuse a mixin none of whose overrides can run for ``loss`` or ``panoptic_pred`` (another mixin replaced,
    without reading it, every variable that consumed them); warn when a mixin shadows another's override of the
    same variable without calling super()."""
    from .graph import _definitions, _parse_requests, _unwrap, reached_definitions, static_graph
    if not set(ROOTS) & set(cls.variables()):  # a formulation without loss or decoding: nothing to check against
        return
    reached = reached_definitions(cls, ROOTS)
    for mixin in mixins:
        overrides = _overrides(mixin, cls)
        if not overrides or any((n, mixin) in reached for n in overrides):
            for n in overrides:
                defs = _definitions(cls, n)
                higher = defs[:defs.index(mixin)]
                if higher and (n, mixin) not in reached:
                    warnings.warn(f"OM mixin '{higher[-1].OM_NAME}' overrides {n} without calling super(): the "
                                  f"override of '{mixin.OM_NAME}' is never used.", stacklevel=3)
            continue
        alone = static_graph(_make_class((base, mixin), (base.OM_NAME, (mixin.OM_NAME,))))
        consumers = set().union(*(alone.downstream(n) | {n} for n in overrides))
        culprits = []
        for other in mixins:
            if other is mixin:
                continue
            cut = sorted(n for n in vars(other) if n in consumers and not (
                set(overrides) & _parse_requests(_unwrap(vars(other)[n]))[0]))
            if cut:
                culprits.append(f"'{other.OM_NAME}' overrides {', '.join(cut)}")
        because = f": {'; '.join(culprits)} without reading them" if culprits else ""
        raise OMCompositionError(
            f"OM mixin '{mixin.OM_NAME}' has no effect in OM.MIXINS {[m.OM_NAME for m in mixins]}: its "
            f"{', '.join(overrides)} can never be computed for {' or '.join(ROOTS)}{because}. Remove one of them "
            f"from OM.MIXINS.")


def loss_reads_network_outputs(cls):
    """Whether ``loss`` of the OutputMath class ``cls`` reads a network output (a ``*_pred`` variable taken from
    the raw batch), i.e. whether training it can change the network."""
    from .graph import reached_definitions
    return any(raw and name.endswith("_pred") for (name, _), raw in reached_definitions(cls, ("loss",)).items())


def decoding_mixins(base_name, mixin_names):
    """Names of the mixins among ``mixin_names`` (on the base ``base_name``; "" is a conventional model, read by the
    base formulation) that change how the network outputs are read: one of their ``*_pred`` definitions runs in
    the decoding (``panoptic_pred``, ``semantic_pred``) and reads a network output, as focal-centers' sigmoid
    heatmap does. Not the oracles (they replace a prediction by a truth) nor the mixins of losses and targets."""
    if not base_name:
        return set()
    from .graph import reached_definitions
    cls = compose(base_name, tuple(mixin_names))
    found = set()
    for (name, owner), _ in reached_definitions(cls, ("panoptic_pred", "semantic_pred")).items():
        if getattr(owner, "OM_KIND", None) != "mixin" or not name.endswith("_pred"):
            continue
        if any(raw and var.endswith("_pred") for (var, _), raw in reached_definitions(cls, (name,)).items()):
            found.add(owner.OM_NAME)
    return found


def formulation_mismatch(trained, evaluated):
    """What differs in how two formulations, ``(OM.NAME, OM.MIXINS)`` of a checkpoint's training and of its
    evaluation, read the network outputs (a list of sentences; empty when they read them alike)."""
    (trained_name, trained_mixins), (name, mixins) = trained, evaluated
    if trained_name and name and trained_name != name:
        return [f"it was trained with OM.NAME '{trained_name}', and is evaluated with '{name}'"]
    base = name or trained_name
    try:
        needed = decoding_mixins(base, trained_mixins)
    except OMCompositionError as e:
        return [f"its training formulation cannot be built here ({e})"]
    lines = [f"it was trained with the mixin '{m}', which changes how the network outputs are read, and is "
             f"evaluated without it" for m in sorted(needed - set(mixins))]
    lines += [f"it is evaluated with the mixin '{m}', which changes how the network outputs are read, and was "
              f"trained without it" for m in sorted(decoding_mixins(base, mixins) - set(trained_mixins))]
    return lines


def _make_class(parts, key):
    base, *mixins = parts
    bases = tuple(reversed(mixins)) + (base,)
    return type("+".join(c.__name__ for c in parts), bases, {"__module__": __name__, "_om_parts": key})


def build_output_math_class(cfg) -> type[OutputMath]:
    """Compose ``cfg.OM.NAME`` with ``cfg.OM.MIXINS`` (the loader has turned the deprecated OM.BASE into OM.NAME)."""
    name = cfg.OM.NAME
    if not name:
        raise OMCompositionError("OM.NAME is empty: set it to one of " + ", ".join(_names("base")) + ".")
    return compose(name, tuple(cfg.OM.MIXINS))


def _rebuild_instance(parts, state):
    """Unpickling helper: re-compose the class from registry names, then restore the instance."""
    cls = compose(*parts)
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj
