"""The 'huber-offsets' mixin: a Huber (smooth L1) offset loss (the worked example of
docs/om/writing_a_formulation.md)."""
import torch.nn.functional as F

from ...loss.criterion import safe_div
from ..build import register_om
from ..core import OutputMath


@register_om("huber-offsets", "mixin")
class HuberOffsets(OutputMath):
    """Huber offset loss: quadratic below OM.HUBER_OFFSETS.BETA pixels of error, linear (as L1) above: a nearly
    right offset gets a gradient proportional to its error instead of L1's constant +-1."""

    def offset_loss(self):
        """Scalar: Huber loss of the offsets (pixels; OM.HUBER_OFFSETS.BETA), averaged with offset_weights_truth
        over both channels, as the L1 offset loss it replaces."""
        beta = self.config.OM.HUBER_OFFSETS.BETA
        error = F.smooth_l1_loss(self.offset_pred(), self.offset_truth(), reduction="none", beta=beta)
        weights = self.offset_weights_truth()[:, None].expand_as(error)
        return safe_div((error * weights).sum(), weights.sum())
