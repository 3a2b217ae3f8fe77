"""The 'focal-centers' mixin: CenterNet's penalty-reduced focal loss on a sigmoid centre heatmap.

Source: Zhou, Wang, Krähenbühl, "Objects as Points" (CenterNet, 2019), eq. 1, after CornerNet (Law & Deng, 2018).
Figure 7: the head's output plus a constant prior logit becomes ``center_logits_pred`` (CenterNet initialises the
heatmap head's bias to -2.19, a prior probability of 0.1; the constant does the same without touching the network),
``center_pred`` is its sigmoid (decoding thresholds probabilities), ``center_loss`` is the focal loss. Its scale
differs from the squared error's: its config sets LOSS.CENTER.WEIGHT 1 (CenterNet's) instead of 200. Test-time
augmentation averages the head's raw outputs, so here logits, before the sigmoid.
"""
import torch
import torch.nn.functional as F

from ...loss.criterion import safe_div
from ..build import register_om
from ..core import OutputMath


@register_om("focal-centers", "mixin")
class FocalCenters(OutputMath):
    """Focal centre heatmap: sigmoid probabilities trained with the penalty-reduced focal loss, positives at the
    Gaussian peaks (OM.FOCAL_CENTERS.ALPHA, BETA)."""

    def center_logits_pred(self):
        """[N, 1, H, W] float: logits of the heatmap, the centre head's output plus OM.FOCAL_CENTERS.PRIOR_LOGIT."""
        return self.raw_batch["center_pred"] + self.config.OM.FOCAL_CENTERS.PRIOR_LOGIT

    def center_pred(self):
        """[N, 1, H, W] float in (0, 1): predicted centre probability, the sigmoid of center_logits_pred."""
        return torch.sigmoid(self.center_logits_pred())

    def center_loss(self):
        """Scalar: -sum((1-p)^a log p at peaks (truth 1) + (1-y)^b p^a log(1-p) elsewhere), weighted by
        center_weights_truth, divided by the number of weighted peaks (at least 1)."""
        alpha, beta = self.config.OM.FOCAL_CENTERS.ALPHA, self.config.OM.FOCAL_CENTERS.BETA
        logits, truth = self.center_logits_pred().float(), self.center_truth()
        weights = self.center_weights_truth()[:, None]
        prob = torch.sigmoid(logits)
        peak = (truth == 1).to(prob.dtype)
        positive = (1 - prob) ** alpha * F.logsigmoid(logits)  # log p, stable for large logits
        negative = (1 - truth) ** beta * prob ** alpha * F.logsigmoid(-logits)  # log(1 - p)
        loss = -(peak * positive + (1 - peak) * negative) * weights
        return safe_div(loss.sum(), (peak * weights).sum().clamp(min=1))
