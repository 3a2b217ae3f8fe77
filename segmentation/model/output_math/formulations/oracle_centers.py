"""The 'oracle-centers' mixin: the ground-truth centre heatmap as the prediction (the paper's oracle studies)."""
from ..build import register_om
from ..core import OutputMath


@register_om("oracle-centers", "mixin")
class OracleCenters(OutputMath):
    """Centre oracle: the predicted heatmap becomes the ground-truth heatmap."""

    def center_pred(self):
        """[N, 1, H, W] float32: center_truth."""
        return self.center_truth()
