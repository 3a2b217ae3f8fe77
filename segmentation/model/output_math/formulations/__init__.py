"""The formulations: one module per base (OM.NAME) or mixin (OM.MIXINS), registered in OM_REGISTRY on import.

Every module of this package is imported here, so that a new formulation is one new file with a class decorated by
``@register_om(name, kind)``: no list to edit (docs/om/writing_a_formulation.md).
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
