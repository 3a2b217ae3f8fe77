"""The 'oracle-offsets' mixin: the ground-truth offsets as the prediction (the paper's oracle studies)."""
from ..build import register_om
from ..core import OutputMath


@register_om("oracle-offsets", "mixin")
class OracleOffsets(OutputMath):
    """Offset oracle: the predicted offsets become the ground-truth offsets."""

    def offset_pred(self):
        """[N, 2, H, W] float32: offset_truth."""
        return self.offset_truth()
