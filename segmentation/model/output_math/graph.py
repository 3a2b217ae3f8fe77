"""The dataflow graph of an output-mathematics class (appendix A of the ModulOM paper).

Two views:

* **static**, from the composed class alone: each method body is parsed for ``self.<name>(...)`` calls and
  ``self[...]`` reads; ``super().<name>(...)`` follows the next definition in the MRO; ``_helper`` methods are
  transparent (their requests count for the caller). Every node knows the class defining it and the mixins
  overriding it.
* **recorded**, from an instance after use: every variable requested while another was being computed is an edge,
  with the positional arguments as part of the node.

Edges are stored as ``(consumer, dependency)``; drawings point from dependency to consumer (the direction data
flows).
"""
import ast
import functools
import inspect
import os
import shutil
import subprocess
import textwrap
from collections import deque
from dataclasses import dataclass, field, replace

from .core import OutputMath, variable_role

KINDS = ("input", "truth", "pred", "loss", "intermediate", "other")
COLORS = {"input": "#d9d9d9", "truth": "#b7e1a1", "pred": "#a6c8ff", "loss": "#ffb3a7", "intermediate": "#fff2b3",
          "other": "#ffffff"}

@dataclass
class Node:
    name: str
    kind: str
    defined_in: str = ""
    overridden_by: tuple = ()
    signature: str = ""
    doc: str = ""
    docs_by_class: dict = field(default_factory=dict)


def node_kind(cls, name, reads_raw_batch=False):
    """input (reads the raw batch), else the variable's declared role (core.variable_role: truth, pred, loss,
    intermediate); other for a variable of an unregistered class without a role."""
    if reads_raw_batch:
        return "input"
    return variable_role(cls, name) or "other"


def _label(key):
    """Display name of a node: ``name`` or ``name('arg', ...)`` for recorded keys."""
    if isinstance(key, str):
        return key
    name, *args = key
    return name if not args else f"{name}({', '.join(repr(a) for a in args)})"


class DataflowGraph:
    def __init__(self, nodes, edges, title="", mixin_names=()):
        self.nodes = nodes  # label -> Node
        self.edges = set(edges)  # (consumer, dependency)
        self.title = title
        self.mixin_names = tuple(mixin_names)  # class names of the mixins composed in
        self._deps, self._users = {}, {}
        for consumer, dep in self.edges:
            self._deps.setdefault(consumer, set()).add(dep)
            self._users.setdefault(dep, set()).add(consumer)

    # ---- queries ------------------------------------------------------------------------------------------------
    def dependencies(self, name):
        """Variables ``name`` requests directly."""
        return set(self._deps.get(name, ()))

    def dependents(self, name):
        """Variables that request ``name`` directly."""
        return set(self._users.get(name, ()))

    def _closure(self, name, step):
        self._check(name)
        seen, todo = set(), [name]
        while todo:
            for nxt in step(todo.pop()):
                if nxt not in seen and nxt != name:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def upstream(self, name):
        """Every variable ``name`` depends on, directly or not."""
        return self._closure(name, self.dependencies)

    def downstream(self, name):
        """Every variable depending on ``name``, directly or not."""
        return self._closure(name, self.dependents)

    def path(self, source, target):
        """Shortest dataflow path [source, ..., target] (source feeds target), or None."""
        self._check(source)
        self._check(target)
        prev, todo = {source: None}, deque([source])
        while todo:
            cur = todo.popleft()
            if cur == target:
                out = []
                while cur is not None:
                    out.append(cur)
                    cur = prev[cur]
                return out[::-1]
            for nxt in sorted(self.dependents(cur)):
                if nxt not in prev:
                    prev[nxt] = cur
                    todo.append(nxt)
        return None

    def _check(self, name):
        if name not in self.nodes:
            raise KeyError(f"'{name}' is not a node of this graph. Nodes: {', '.join(sorted(self.nodes))}.")

    # ---- exports ------------------------------------------------------------------------------------------------
    def to_dot(self):
        """Graphviz DOT text; nodes coloured by kind, overridden nodes bold with the overriding mixins named."""
        lines = ["digraph OutputMath {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", '
                 'fontname="Helvetica", fontsize=10];']
        if self.title:
            lines.append(f'  label="{self.title}"; labelloc=t;')
        for label in sorted(self.nodes):
            n = self.nodes[label]
            text = label if not n.overridden_by else f"{label}\\n(overridden by {', '.join(n.overridden_by)})"
            extra = ', penwidth=2.5, color="#c0392b"' if n.overridden_by else ""
            lines.append(f'  "{label}" [label="{text}", fillcolor="{COLORS[n.kind]}"{extra}];')
        for consumer, dep in sorted(self.edges):
            lines.append(f'  "{dep}" -> "{consumer}";')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self):
        """Mermaid flowchart text with one class per node kind."""
        ids = {label: f"n{i}" for i, label in enumerate(sorted(self.nodes))}
        lines = ["flowchart LR"]
        for label in sorted(self.nodes):
            n = self.nodes[label]
            text = label.replace('"', "'")
            if n.overridden_by:
                text += f"<br/>overridden by {', '.join(n.overridden_by)}"
            lines.append(f'  {ids[label]}["{text}"]:::{n.kind}')
        for consumer, dep in sorted(self.edges):
            lines.append(f"  {ids[dep]} --> {ids[consumer]}")
        for kind in KINDS:
            lines.append(f"  classDef {kind} fill:{COLORS[kind]},stroke:#333")
        return "\n".join(lines) + "\n"

    def render(self, path_without_ext, formats=("png", "svg")):
        """Render with Graphviz: the ``graphviz`` package if installed, else the ``dot`` binary.

        Returns the written paths; raises RuntimeError with installation hints when ``dot`` is missing.
        """
        if shutil.which("dot") is None:
            raise RuntimeError("Rendering needs the Graphviz 'dot' binary (e.g. `apt-get install graphviz`, "
                               "optionally `pip install graphviz`); the DOT and Mermaid texts do not need it.")
        written = []
        for fmt in formats:
            out = f"{path_without_ext}.{fmt}"
            subprocess.run(["dot", f"-T{fmt}", "-o", out], input=self.to_dot(), text=True, check=True)
            written.append(out)
        return written

    def variables_table(self):
        """Markdown table (the paper's Figure 7): block, variable, signature, meaning, overriding mixins."""
        rows = ["| block | variable | signature | meaning | overridden by |", "|---|---|---|---|---|"]
        for label in sorted(self.nodes, key=lambda n: (self.nodes[n].defined_in, n)):
            n = self.nodes[label]
            rows.append(f"| {n.defined_in} | `{n.name}` | `{n.signature}` | {n.doc} | "
                        f"{', '.join(n.overridden_by) or ''} |")
        return "\n".join(rows) + "\n"

    def mixins_table(self):
        """Markdown table of what each mixin changes against the base: mixin, change, variable, what it does."""
        rows = ["| mixin | change | variable | what it does |", "|---|---|---|---|"]
        entries = []
        for label in sorted(self.nodes):
            n = self.nodes[label]
            entries += [(m, "overrides", n) for m in n.overridden_by]
            if n.defined_in in self.mixin_names:
                entries.append((n.defined_in, "adds", n))
        for mixin, change, n in sorted(entries, key=lambda e: (e[0], e[1], e[2].name)):
            rows.append(f"| {mixin} | {change} | `{n.name}` | {n.docs_by_class.get(mixin, '')} |")
        return "\n".join(rows) + "\n"


def _first_line(doc):
    """The docstring's first paragraph on one line (Markdown-table safe)."""
    if not doc:
        return ""
    paragraph = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(paragraph.split()).replace("|", "\\|")


def _unwrap(fn):
    return getattr(fn, "__wrapped__", fn)


@functools.cache
def _parse_requests(fn):
    """(requested names, helper names, super-called names, reads raw_batch) of one function's body."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return frozenset(), frozenset(), frozenset(), False
    tree = ast.parse(source)
    requests, helpers, supers, raw = set(), set(), set(), False
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value
            if isinstance(base, ast.Name) and base.id == "self":
                if node.attr == "raw_batch":
                    raw = True
                elif node.attr.startswith("_"):
                    helpers.add(node.attr)
                else:
                    requests.add(node.attr)
            elif isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                supers.add(node.attr)
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "self":
            sl = node.slice
            first = sl.elts[0] if isinstance(sl, ast.Tuple) and sl.elts else sl
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                requests.add(first.value)
    return frozenset(requests), frozenset(helpers), frozenset(supers), raw


def _definitions(cls, name):
    """Classes of ``cls.__mro__`` (most derived first) that define ``name``, excluding OutputMath and object."""
    return [c for c in cls.__mro__ if name in vars(c) and c not in (OutputMath, object)]


def _requests_of(cls, name, start=0, seen=None):
    """Names requested by the definition of ``name`` at MRO position ``start`` (following super() and helpers)."""
    seen = set() if seen is None else seen
    defs = _definitions(cls, name)
    if start >= len(defs) or (name, start) in seen:
        return set(), False
    seen.add((name, start))
    fn = _unwrap(vars(defs[start])[name])
    requests, helpers, supers, raw = _parse_requests(fn)
    out = set(requests)
    for h in helpers:
        if callable(getattr(cls, h, None)) and not isinstance(inspect.getattr_static(cls, h), (staticmethod,
                                                                                                 classmethod)):
            sub, sub_raw = _requests_of(cls, h, 0, seen)
            out |= sub
            raw = raw or sub_raw
    if name in supers:
        sub, sub_raw = _requests_of(cls, name, start + 1, seen)
        out |= sub
        raw = raw or sub_raw
    return out, raw


def reached_definitions(cls, roots):
    """{(name, defining class): reads the raw batch} for every definition that runs when ``roots`` are computed:
    requests go to the most derived definition, ``super().name`` to the next one in the MRO, helpers are followed.
    A definition missing here can never run for these roots (e.g. an override shadowed by a later mixin)."""
    reached, todo = {}, [(name, 0) for name in roots]
    seen = set()
    while todo:
        name, position = todo.pop()
        defs = _definitions(cls, name)
        if position >= len(defs) or (name, position) in seen:
            continue
        seen.add((name, position))
        fn = _unwrap(vars(defs[position])[name])
        if not callable(fn):
            continue
        requests, helpers, supers, raw = _parse_requests(fn)
        reached[(name, defs[position])] = raw
        todo += [(r, 0) for r in requests | helpers]
        if name in supers:
            todo.append((name, position + 1))
    return reached


def prediction_variables(cls):
    """Sorted names of the variables of ``cls`` computable from the network outputs alone (no ground truth): every
    definition they run that reads the raw batch reads a ``*_pred`` entry."""
    names = []
    for name in cls.variables():
        reached = reached_definitions(cls, (name,))
        if all(not raw or var.endswith("_pred") for (var, _), raw in reached.items()):
            names.append(name)
    return sorted(names)


def static_graph(cls):
    """The static DataflowGraph of an OutputMath class (computed once per class)."""
    cached = cls.__dict__.get("_om_static_graph")
    if cached is not None:
        return cached
    variables = set(cls.variables())
    nodes, edges = {}, set()
    for name in sorted(variables):
        defs = _definitions(cls, name)
        requests, raw = _requests_of(cls, name)
        definer = next((c for c in reversed(defs) if getattr(c, "OM_KIND", None) != "mixin"), defs[-1])
        mixins = tuple(c.__name__ for c in defs if getattr(c, "OM_KIND", None) == "mixin" and c is not definer)
        fn = _unwrap(getattr(cls, name))
        sig = str(inspect.signature(fn)).replace("(self, ", "(").replace("(self)", "()")
        nodes[name] = Node(name, node_kind(cls, name, raw), definer.__name__, mixins, f"{name}{sig}",
                           _first_line(_unwrap(vars(definer)[name]).__doc__ if name in vars(definer) else fn.__doc__),
                           {c.__name__: _first_line(_unwrap(vars(c)[name]).__doc__) for c in defs})
        edges |= {(name, dep) for dep in requests if dep in variables and dep != name}
    mixin_names = [c.__name__ for c in cls.__mro__ if getattr(c, "OM_KIND", None) == "mixin"]
    graph = DataflowGraph(nodes, edges, title=cls.__name__, mixin_names=mixin_names)
    cls._om_static_graph = graph
    return graph


def recorded_graph(om):
    """The DataflowGraph recorded on an instance: nodes are (name, *args) keys that were computed or requested."""
    static = static_graph(type(om))
    keys = set()
    edges = set()
    for consumer, dep in om.recorded_edges():
        if consumer == dep:
            continue
        keys |= {consumer, dep}
        edges.add((_label(consumer), _label(dep)))
    for name, per_args in om.cached().items():
        keys |= {(name, *a) for a in per_args}
    nodes = {}
    for key in keys:
        base = static.nodes.get(key[0])
        label = _label(key)
        nodes[label] = Node(label, node_kind(type(om), key[0])) if base is None else replace(base, name=label)
    return DataflowGraph(nodes, edges, title=f"{type(om).__name__} (recorded)", mixin_names=static.mixin_names)


def write_graph_outputs(graph, out_dir, stem="graph", render=True):
    """Write DOT, Mermaid, the two Markdown tables and (if Graphviz is there) PNG/SVG; returns a list of notes."""
    os.makedirs(out_dir, exist_ok=True)
    files = {f"{stem}.dot": graph.to_dot(), f"{stem}.mmd": graph.to_mermaid(),
             f"{stem}_variables.md": graph.variables_table(), f"{stem}_mixins.md": graph.mixins_table()}
    for name, text in files.items():
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)
    notes = [os.path.join(out_dir, n) for n in files]
    if render:
        try:
            notes += graph.render(os.path.join(out_dir, stem))
        except RuntimeError as e:
            notes.append(str(e))
    return notes
