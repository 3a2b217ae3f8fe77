"""The layering of the package is a contract: a module imports only from its own layer or the layers below.

Bottom to top: config and utils; data; the network (backbones, decoders, losses, meta-architectures, their builder,
the solver); the output mathematics and decoding (with the ``segmentation.model`` facade that wraps the network in
it); evaluation; the engine; ablations (jobs of the engine); the tools and the package's top-level API. Checked on
the import statements of every module (absolute and relative, at module level or inside functions), so a lazy import
cannot hide an upward one.
"""
import ast
import glob
import os

from tests.conftest import ROOT

LAYERS = [
    ("segmentation.config", "segmentation.utils"),
    ("segmentation.data",),
    ("segmentation.model.backbone", "segmentation.model.decoder", "segmentation.model.loss",
     "segmentation.model.meta_arch", "segmentation.model.build", "segmentation.model.original_format",
     "segmentation.solver"),
    ("segmentation.model", "segmentation.model.output_math", "segmentation.model.post_processing",
     "segmentation.model.export"),
    ("segmentation.evaluation",),
    ("segmentation.engine",),
    ("segmentation.ablation",),
    ("segmentation", "tools"),
]


def layer_of(module):
    """Index of the layer of ``module``: the layer of its longest listed prefix (None outside the package)."""
    matches = [(len(prefix), i) for i, layer in enumerate(LAYERS) for prefix in layer
               if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1] if matches else None


def _module_name(path):
    name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def imports(path, module=None):
    """Every module ``path`` (named ``module``) imports, as absolute names (``from x import y``: x and x.y)."""
    module = module or _module_name(path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def test_nothing_imports_upward():
    files = glob.glob(os.path.join(ROOT, "segmentation", "**", "*.py"), recursive=True)
    files += glob.glob(os.path.join(ROOT, "tools", "*.py"))
    violations = []
    for path in files:
        own = layer_of(_module_name(path))
        for target in imports(path):
            other = layer_of(target) if target.startswith("segmentation") else None
            if other is not None and other > own:
                violations.append(f"{_module_name(path)} (layer {own}) imports {target} (layer {other})")
    assert violations == []


def test_every_module_has_a_layer():
    modules = [_module_name(p) for p in glob.glob(os.path.join(ROOT, "segmentation", "**", "*.py"), recursive=True)]
    assert [m for m in modules if layer_of(m) is None] == []
    assert layer_of("segmentation.model.output_math.wrapper") == 3 and layer_of("segmentation.model.build") == 2


def test_the_checker_sees_a_lazy_upward_import(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from ..engine import Trainer\n")
    found = set(imports(str(path), "segmentation.data.probe"))
    assert {"segmentation.engine", "segmentation.engine.Trainer"} <= found
    assert layer_of("segmentation.engine") > layer_of("segmentation.data.probe")
