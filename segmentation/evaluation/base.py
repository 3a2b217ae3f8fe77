"""The evaluator protocol and its registry.

An evaluator sees the split one image at a time and returns its metrics at the end, as detectron2's
DatasetEvaluator:

* ``reset()``: forget everything (called before a pass over the split);
* ``process(inputs, outputs)``: one image; ``inputs`` is the loader's batch of one (``panoptic`` [1, H, W] ground
  truth in the train-id encoding, ``file_name``, ``image``), ``outputs`` maps the decoded OM variables the evaluator
  lists in ``needs`` (e.g. ``semantic_pred`` [1, H, W], ``panoptic_pred`` [1, H, W]) to tensors;
* ``synchronize()``: with several processes, reduce the state across them (every process calls it);
* ``evaluate()``: the metrics, a dict of floats in percent (and nested per-class dicts), on the main process; an
  evaluator that only writes files returns {}.

``EVALUATOR_REGISTRY`` maps a name to a builder ``(cfg, metadata, output_dir) -> evaluator or None`` (None when the
config does not ask for it); ``build_evaluators`` calls every builder, so a new metric is one file with one
registered builder.
"""
from ..utils.registry import Registry

EVALUATOR_REGISTRY = Registry(
    "EVALUATOR_REGISTRY",
    contract=("A function (cfg, metadata, output_dir) -> DatasetEvaluator, or None when the config does not ask "
              "for it (e.g. TEST.EVAL_INSTANCE False); every registered builder is called by build_evaluators."),
    config_key="TEST.* (each evaluator reads its own keys)",
)


class DatasetEvaluator:
    """Base of the evaluators: see the module docstring for the protocol. ``needs``: the OM variables it reads."""

    needs = ("semantic_pred",)

    def reset(self):
        pass

    def process(self, inputs: dict, outputs: dict) -> None:
        raise NotImplementedError

    def synchronize(self):
        pass

    def evaluate(self) -> dict:
        return {}


def is_panoptic(cfg):
    """True when the configured model and TEST.EVAL_PANOPTIC give panoptic predictions to evaluate."""
    m = cfg.MODEL
    return m.META_ARCHITECTURE == "panoptic_deeplab" and m.PANOPTIC_DEEPLAB.INSTANCE.ENABLE and cfg.TEST.EVAL_PANOPTIC


def build_evaluators(cfg, metadata, output_dir: str | None = None) -> list["DatasetEvaluator"]:
    """Every evaluator the config asks for (the package registers every evaluator module on import)."""
    evaluators = [EVALUATOR_REGISTRY.get(name)(cfg, metadata, output_dir) for name in EVALUATOR_REGISTRY.names()]
    return [e for e in evaluators if e is not None]
