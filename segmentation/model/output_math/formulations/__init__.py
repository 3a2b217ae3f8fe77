"""Built-in formulations, registered in OM_REGISTRY on import."""
from . import mixins, panoptic_deeplab  # noqa: F401  (registration)
from .mixins import CPUTensors, LearnableCenters, OracleCenters, OracleOffsets, OracleSemantics, PushPull
from .panoptic_deeplab import PanDLGroundTruth, PanDLLosses, PanDLPrediction, PanopticDeepLab, PanopticVariables

__all__ = ["CPUTensors", "LearnableCenters", "OracleCenters", "OracleOffsets", "OracleSemantics", "PanDLGroundTruth",
           "PanDLLosses", "PanDLPrediction", "PanopticDeepLab", "PanopticVariables", "PushPull"]
