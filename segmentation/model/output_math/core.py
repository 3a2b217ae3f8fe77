"""The ``OutputMath`` base class: every mathematical variable is a memoized method of a per-batch object.

Memoization rules (those of the ModulOM paper's repository, kept exactly):

* a public method's result is cached per instance, keyed by the method name and its positional arguments after
  default filling (``semantic_pred()`` and ``semantic_pred("id")`` share one entry when "id" is the default;
  a positional-or-keyword parameter passed by name is bound to its position and still cached);
* methods whose name starts with ``_`` are never cached (computation helpers, still overridable);
* a call that passes a keyword-only argument (or anything caught by ``**kwargs``) bypasses the cache;
* ``@no_cache`` marks a method never cached; ``@no_cache(condition)`` caches only when ``condition(bound)`` is
  false, ``bound`` being the call's ``inspect.BoundArguments`` (defaults applied).

The wrappers are ordinary closures made with ``functools.wraps`` when a subclass is created (no ``exec``, no source
generation): annotations and any default value work, ``*args`` works, ``help()`` shows the original signature and
docstring, instances pickle, and an instance holds no reference cycle (its cache is a plain dict of values).
"""
import functools
import inspect
import time
from dataclasses import dataclass

import torch

_NO_CACHE = "_om_no_cache"
_MISSING = object()


class OMCycleError(RuntimeError):
    """A variable was requested again while it was being computed (a dependency cycle between variables)."""


def no_cache(condition=None):
    """Mark a method as never cached (``@no_cache``) or cached only when ``condition(bound_args)`` is false
    (``@no_cache(lambda bound: bound.arguments["a"] is not None)``)."""
    if inspect.isfunction(condition) and _looks_like_method(condition):  # used bare: @no_cache
        setattr(condition, _NO_CACHE, True)
        return condition
    if condition is not None and not callable(condition):
        raise TypeError("no_cache(condition): condition must be a callable receiving the bound arguments, "
                        f"got {condition!r} (string conditions are not supported).")

    def deco(fn):
        setattr(fn, _NO_CACHE, True if condition is None else condition)
        return fn
    return deco


# The role of a variable: named by its suffix (``<quantity>_truth``, ``<quantity>_pred``, ``<quantity>_loss`` and
# ``loss``) or declared with ``@role`` for the intermediate tables a formulation computes along the way.
ROLES = ("truth", "pred", "loss", "intermediate")
_ROLE = "_om_role"


def role(kind):
    """Declare the role of a variable whose name does not say it (``@role("intermediate")``)."""
    if kind not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {kind!r}.")

    def deco(fn):
        setattr(fn, _ROLE, kind)
        return fn
    return deco


def variable_role(cls, name):
    """The role of variable ``name`` of ``cls``: declared with ``@role``, else named by its suffix; None if neither."""
    declared = getattr(getattr(cls, name, None), _ROLE, None)
    if declared:
        return declared
    for kind, suffix in (("truth", "_truth"), ("pred", "_pred"), ("loss", "_loss")):
        if name.endswith(suffix):
            return kind
    return "loss" if name == "loss" else None


def _looks_like_method(fn):
    params = list(inspect.signature(fn).parameters)
    return bool(params) and params[0] == "self"


def tensor_bytes(value):
    """Bytes of tensor storage reachable from ``value`` (tensors, lists, tuples, dicts)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    return 0


class _Spec:
    """What the wrapper needs to build a cache key quickly."""

    __slots__ = ("signature", "positional", "n_pos", "defaults", "n_required", "condition")

    def __init__(self, fn, condition):
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())[1:]  # drop self
        pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.signature = sig
        self.positional = frozenset(p.name for p in pos)
        self.n_pos = len(pos)
        self.defaults = tuple(p.default for p in pos)
        self.n_required = sum(p.default is p.empty for p in pos)
        self.condition = condition


_signature = functools.lru_cache(maxsize=None)(inspect.signature)


def _cached(fn, name):
    """Wrap ``fn`` so that its results are memoized in the instance's cache (see module docstring)."""
    condition = getattr(fn, _NO_CACHE, None)
    spec = _Spec(fn, condition if callable(condition) else None)

    # plain values in the closure (not the _Spec object, nor the signature): torch.compile traces through them
    positional, n_pos, defaults, n_required, cond = (spec.positional, spec.n_pos, spec.defaults, spec.n_required,
                                                     spec.condition)

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        state = self._om
        if kwargs or cond is not None:
            try:
                bound = _signature(fn).bind(self, *args, **kwargs)
            except TypeError:
                return fn(self, *args, **kwargs)  # let the method raise its own error
            bound.apply_defaults()
            if any(k not in positional for k in kwargs) or (cond and cond(bound)):
                return state.compute(self, fn, None, args, kwargs)
            args = bound.args[1:]
            kwargs = {}
        elif len(args) < n_pos:
            if len(args) < n_required:
                return fn(self, *args)  # raises the usual missing-argument TypeError
            args = args + defaults[len(args):]
        key = (name, *args)
        if state.stack and state.stack[-1].key == key:  # super().<name>(...) inside an override: no second entry
            return fn(self, *args)
        try:
            value = state.cache.get(key, _MISSING)
        except TypeError:  # unhashable argument: compute without caching
            return state.compute(self, fn, None, args, {})
        if value is _MISSING:
            return state.compute(self, fn, key, args, {})
        state.hit(key)
        return value

    wrapper.__om_wrapped__ = True
    wrapper.__om_spec__ = spec
    return wrapper


@dataclass(slots=True)
class _Frame:
    """A variable being computed: its cache key and the seconds spent in the variables it requested."""

    key: tuple
    children_s: float = 0.0


@dataclass(slots=True)
class _Stat:
    """Per-variable counters of an instance."""

    hits: int = 0
    misses: int = 0
    exclusive_s: float = 0.0  # compute time minus the time of the variables it requested


class _State:
    """Per-instance cache, statistics, recorded dataflow edges and release policy (no back-reference to the OM)."""

    __slots__ = ("cache", "stats", "edges", "stack", "release", "consumers", "keep", "graph", "finished")

    def __init__(self):
        self.cache = {}
        self.stats = {}  # name -> _Stat
        self.edges = set()  # (caller key, callee key)
        self.stack = []  # _Frame of each variable being computed, innermost last
        self.release = False
        self.consumers = None  # name -> remaining consumer count, while a release-policy request runs
        self.keep = frozenset()  # names never released during the current request
        self.graph = None  # DataflowGraph used by the release policy
        self.finished = set()  # variable names whose inputs were already accounted for

    def hit(self, key):
        self.stats.setdefault(key[0], _Stat()).hits += 1
        if self.stack:
            self.edges.add((self.stack[-1].key, key))

    def compute(self, om, fn, key, args, kwargs):
        node = key if key is not None else (fn.__name__, *args)
        if key is not None and any(frame.key == key for frame in self.stack):
            chain = [frame.key for frame in self.stack[next(i for i, f in enumerate(self.stack) if f.key == key):]]
            raise OMCycleError("Dependency cycle between variables: " + " -> ".join(
                f"{k[0]}{k[1:] if len(k) > 1 else '()'}" for k in [*chain, key]) + ". Two overrides feed each "
                "other; declare the combination incompatible (OM_INCOMPATIBLE) or break the cycle.")
        if self.stack:
            self.edges.add((self.stack[-1].key, node))
        frame = _Frame(node)
        self.stack.append(frame)
        t0 = _clock()
        try:
            value = fn(om, *args, **kwargs)
        finally:
            self.stack.pop()
        elapsed = _clock() - t0
        stat = self.stats.setdefault(node[0], _Stat())
        stat.misses += 1
        stat.exclusive_s += elapsed - frame.children_s
        if self.stack:
            self.stack[-1].children_s += elapsed
        if key is not None:
            self.cache[key] = value
        if self.consumers is not None:
            self._release_inputs_of(node)
        return value

    def _release_inputs_of(self, node):
        if node[0] in self.finished:
            return
        self.finished.add(node[0])
        for name in self.graph.dependencies(node[0]):
            remaining = self.consumers.get(name)
            if remaining is None:
                continue
            self.consumers[name] = remaining - 1
            if remaining <= 1 and name not in self.keep:
                for k in [k for k in self.cache if k[0] == name]:
                    del self.cache[k]


def _clock():
    """Seconds for the exclusive-time statistics; 0 while torch.compile traces (reading a clock would break the
    graph)."""
    return 0.0 if torch.compiler.is_compiling() else time.perf_counter()


class OutputMath:
    """Base class of every output-mathematics formulation, built once per batch.

    Args:
        raw_batch: dict of tensors: network outputs ``<name>_pred``, targets ``<name>_truth``, ``image``.
        config: the experiment's yacs config (read-only).
        metadata: the dataset's ``DatasetMetadata``.
        device: the device variables are computed on (default: that of the first tensor in ``raw_batch``).
        losses: dict of loss modules (e.g. ``{"semantic": ..., "center": ..., "offset": ...}``).
        release: enable the memory release policy (see ``request``).

    Public methods are memoized (module docstring); ``om[name]`` / ``om[name, *args]`` reads a variable and
    ``om[name] = value`` injects one.
    """

    OM_NAME = None  # registry name, set by ``register_om``
    OM_ALIASES = {}  # old variable name -> its current name (still accepted, with a DeprecationWarning)
    OM_INCOMPATIBLE = ()  # registry names this class cannot be composed with (checked at build time)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, attr in list(vars(cls).items()):
            if name.startswith("_") or not inspect.isfunction(attr) or getattr(attr, "__om_wrapped__", False):
                continue
            if getattr(attr, _NO_CACHE, None) is True:
                continue
            setattr(cls, name, _cached(attr, name))

    def __init__(self, raw_batch, config=None, metadata=None, device=None, losses=None, release=False):
        self.raw_batch = raw_batch
        self.config = config
        self.metadata = metadata
        if device is None:
            device = next((v.device for v in raw_batch.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
        self.device = torch.device(device)
        self.losses = losses or {}
        self._om = _State()
        self._om.release = release

    # ---- dict-style access -------------------------------------------------------------------------------------
    def __getitem__(self, key):
        name, args = (key, ()) if isinstance(key, str) else (key[0], tuple(key[1:]))
        return self._method(name)(*args)

    def __setitem__(self, key, value):
        name, args = (key, ()) if isinstance(key, str) else (key[0], tuple(key[1:]))
        self._method(name)
        spec = getattr(getattr(type(self), name), "__om_spec__", None)
        if spec is None:
            raise KeyError(f"'{name}' is not memoized (no_cache), so a value cannot be injected for it.")
        if len(args) < spec.n_required:
            raise TypeError(f"om[{key!r}] = ...: give every required positional argument of {name}{spec.signature}.")
        self._om.cache[(name, *args, *spec.defaults[len(args):])] = value

    def __getattr__(self, name):
        """Old variable names (``OM_ALIASES``) still work, with a DeprecationWarning naming the new one."""
        new = type(self).OM_ALIASES.get(name)
        if new is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        import warnings
        warnings.warn(f"OM variable '{name}' is now '{new}'.", DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    def _method(self, name):
        if isinstance(name, str) and name in type(self).OM_ALIASES:
            return getattr(self, name)
        if not isinstance(name, str) or name.startswith("_") or not callable(getattr(type(self), name, None)):
            raise KeyError(f"{type(self).__name__} has no variable '{name}'. Variables: {', '.join(self.variables())}.")
        return getattr(self, name)

    # ---- introspection -----------------------------------------------------------------------------------------
    @classmethod
    def variables(cls):
        """Sorted names of the memoized variables of this class."""
        return sorted(n for n in dir(cls) if not n.startswith("_") and getattr(getattr(cls, n), "__om_wrapped__",
                                                                               False))

    @no_cache
    def cached(self):
        """Dict {name: {args tuple: value}} of what is cached now."""
        out = {}
        for key, value in self._om.cache.items():
            out.setdefault(key[0], {})[key[1:]] = value
        return out

    @no_cache
    def recorded_edges(self):
        """Set of (caller key, callee key) requests recorded while computing variables (keys: (name, *args))."""
        return set(self._om.edges)

    @no_cache
    def stats(self):
        """Per-variable hits, misses, exclusive compute time (s) and tensor bytes held, as a ``StatsTable``."""
        held = {}
        for key, value in self._om.cache.items():
            held[key[0]] = held.get(key[0], 0) + tensor_bytes(value)
        rows = {name: {"hits": s.hits, "misses": s.misses, "time_s": s.exclusive_s, "bytes": held.get(name, 0)}
                for name, s in self._om.stats.items()}
        return StatsTable(rows)

    @no_cache
    def request(self, *names):
        """Compute the variables ``names`` (each a name or (name, *args)) and return their values in order.

        With the release policy on (``release=True``), a cached variable is dropped as soon as every variable of the
        class's dataflow graph that reads it, among those needed for this request, has been computed, unless it was
        requested; at the end only requested values stay cached. Results are identical either way (a dropped value
        is recomputed if something unforeseen asks for it again).
        """
        keys = [(n, ()) if isinstance(n, str) else (n[0], tuple(n[1:])) for n in names]
        for n, _ in keys:
            self._method(n)  # unknown names: KeyError listing the variables
        state = self._om
        if not state.release:
            return [self._method(n)(*a) for n, a in keys]
        from .graph import static_graph
        graph = static_graph(type(self))
        needed = set()
        for n, _ in keys:
            needed |= graph.upstream(n) | {n}
        state.graph, state.finished, state.consumers = graph, set(), {}
        for node in needed:
            for dep in graph.dependencies(node):
                if dep in needed:
                    state.consumers[dep] = state.consumers.get(dep, 0) + 1
        state.keep = frozenset(n for n, _ in keys)
        try:
            values = [self._method(n)(*a) for n, a in keys]
        finally:
            state.consumers = None
            for k in [k for k in state.cache if k[0] not in state.keep]:  # only the requested variables stay
                del state.cache[k]
            state.keep = frozenset()
        return values

    def __reduce__(self):
        cls = type(self)
        build = getattr(cls, "_om_parts", None)
        state = dict(self.__dict__)
        om_state = state.pop("_om")
        state["__om_cache__"] = dict(om_state.cache)
        state["__om_release__"] = om_state.release
        if build is not None:
            from .build import _rebuild_instance
            return _rebuild_instance, (build, state)
        return _restore_instance, (cls, state)

    def __setstate__(self, state):
        cache = state.pop("__om_cache__", {})
        release = state.pop("__om_release__", False)
        self.__dict__.update(state)
        self._om = _State()
        self._om.cache.update(cache)
        self._om.release = release


def _restore_instance(cls, state):
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


class StatsTable(dict):
    """{name: {hits, misses, time_s, bytes}} that prints as an aligned table."""

    def __str__(self):
        lines = [f"{'variable':28s} {'hits':>6s} {'misses':>6s} {'time ms':>9s} {'MiB held':>9s}"]
        for name, r in sorted(self.items(), key=lambda kv: -kv[1]["time_s"]):
            lines.append(f"{name:28s} {r['hits']:6d} {r['misses']:6d} {1e3 * r['time_s']:9.3f} "
                         f"{r['bytes'] / 2 ** 20:9.3f}")
        return "\n".join(lines)


__all__ = ["OutputMath", "StatsTable", "no_cache", "tensor_bytes"]
