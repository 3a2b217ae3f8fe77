"""Toy formulations for the OM core tests (module level, so that instances pickle)."""

import torch

from segmentation.model.output_math import OutputMath, no_cache, register_om, role

CALLS = []


class Toy(OutputMath):
    def x_pred(self):
        """[N] float: the raw network output."""
        CALLS.append("x_pred")
        return self.raw_batch["x_pred"]

    def y_truth(self):
        """[N] float: the target."""
        CALLS.append("y_truth")
        return self.raw_batch["y_truth"]

    def scaled_pred(self, factor: float = 2.0, *, offset: float | None = None):
        """[N] float: x * factor (+ offset)."""
        CALLS.append(("scaled_pred", factor, offset))
        out = self.x_pred() * factor
        return out if offset is None else out + offset

    def mode_pred(self, mode="a"):
        CALLS.append(("mode_pred", mode))
        return mode

    @role("intermediate")
    def many(self, *items):
        CALLS.append(("many", items))
        return sum(items)

    def error_loss(self):
        """Scalar: mean absolute error."""
        return (self._diff()).abs().mean()

    def loss(self):
        """Scalar: the total."""
        return self.error_loss() + 0 * self["y_truth"].sum()

    def _diff(self):
        CALLS.append("_diff")
        return self.scaled_pred() - self.y_truth()

    @no_cache
    def fresh(self):
        CALLS.append("fresh")
        return object()

    @role("intermediate")
    @no_cache(lambda bound: bound.arguments["a"] is not None)
    def maybe(self, a=None, b=1):
        CALLS.append(("maybe", a, b))
        return object()


@register_om("toy", "base")
class ToyBase(Toy):
    """The toy base formulation."""


@register_om("toy-oracle", "mixin")
class ToyOracle(OutputMath):
    """Replace the prediction by the truth."""

    def scaled_pred(self, factor: float = 2.0, *, offset: float | None = None):
        """The truth, whatever the factor."""
        return self.y_truth()


@register_om("toy-shift", "mixin")
class ToyShift(OutputMath):
    """Shift the scaled prediction by one."""

    def scaled_pred(self, factor: float = 2.0, *, offset: float | None = None):
        """The parent's value plus one."""
        return super().scaled_pred(factor) + 1


@register_om("toy-shift-twice", "mixin")
class ToyShiftTwice(ToyShift):
    """A mixin derived from another one (for linearisation tests)."""

    def scaled_pred(self, factor: float = 2.0, *, offset: float | None = None):
        """The parent's value plus one more."""
        return super().scaled_pred(factor) + 1


@register_om("toy-loop-a", "mixin")
class ToyLoopA(OutputMath):
    """x_pred reads y_truth (for cycle tests)."""

    def x_pred(self):
        return self.y_truth() + 0


@register_om("toy-loop-b", "mixin")
class ToyLoopB(OutputMath):
    """y_truth reads x_pred (for cycle tests)."""

    def y_truth(self):
        return self.x_pred() + 0


@register_om("toy-refuses-oracle", "mixin", incompatible=("toy-oracle",))
class ToyRefusesOracle(OutputMath):
    """Needs real predictions, so the toy oracle makes no sense with it."""

    def error_loss(self):
        return self.x_pred().sum()


def batch():
    return {"x_pred": torch.tensor([1.0, 2.0]), "y_truth": torch.tensor([2.0, 4.0])}
