"""The 'hard-pixel-centers' mixin: the centre-heatmap loss restricted to the hardest pixels.

Source: online bootstrapping of hard pixels (Wu, Shen, van den Hengel, "Bridging category-level and instance-level
semantic image segmentation", 2016), which Panoptic-DeepLab applies to its semantic loss (LOSS.SEMANTIC.NAME
hard_pixel_mining); here applied to the heatmap. Figure 7: only ``center_loss`` changes.
"""
from ..build import register_om
from ..core import OutputMath


@register_om("hard-pixel-centers", "mixin")
class HardPixelCenters(OutputMath):
    """Hard-pixel centre loss: the mean of the OM.HARD_PIXEL_CENTERS.TOP_K_PERCENT largest weighted squared errors
    of the batch's heatmaps."""

    def center_loss(self):
        """Scalar: mean of the largest fraction OM.HARD_PIXEL_CENTERS.TOP_K_PERCENT of the per-pixel squared
        heatmap errors times center_weights_truth over the batch (1: their plain mean)."""
        fraction = self.config.OM.HARD_PIXEL_CENTERS.TOP_K_PERCENT
        error = (self.center_pred() - self.center_truth()).pow(2) * self.center_weights_truth()[:, None]
        error = error.reshape(-1)
        k = max(1, int(fraction * error.numel()))
        return error.topk(k, sorted=False).values.mean()
