"""ModulOM: output mathematics (targets, losses, decoding) as memoized methods of a per-batch object.

``core`` holds the ``OutputMath`` base class and its memoization rules, ``build`` the registry of formulations and
their composition, ``graph`` the dataflow graph drawn from code, ``formulations`` the registered bases and mixins.
"""
from .build import (
    OM_REGISTRY,
    OMCompositionError,
    build_output_math_class,
    compose,
    decoding_mixins,
    formulation_mismatch,
    register_om,
)
from .core import OMCycleError, OutputMath, StatsTable, no_cache, role, tensor_bytes, variable_role
from .graph import DataflowGraph, recorded_graph, static_graph, write_graph_outputs

__all__ = ["OM_REGISTRY", "DataflowGraph", "OMCompositionError", "OMCycleError", "OutputMath", "StatsTable",
           "build_output_math_class", "compose", "decoding_mixins", "formulation_mismatch", "no_cache",
           "recorded_graph", "register_om", "role", "static_graph", "tensor_bytes", "variable_role",
           "write_graph_outputs"]

from . import formulations  # noqa: E402,F401  (registers the built-in formulations)
