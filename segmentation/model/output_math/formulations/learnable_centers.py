"""The 'learnable-centers' mixin: instance centres are the mean of the predicted votes (Figure 7's orange block)."""
import torch

from ..build import register_om
from ..core import OutputMath


@register_om("learnable-centers", "mixin", incompatible=("oracle-offsets",))
class LearnableCenters(OutputMath):
    """Learnable centres: an instance's centre is the mean of its pixels' predicted votes (refused with
    oracle-offsets, which would define the offsets by the centres they define)."""

    def centroids_truth(self):
        """[N, L, 2] float: (y, x) mean of the votes p + offset(p) over each segment's pixels, per image;
        differentiable unless OM.LEARNABLE_CENTERS.DETACH; heatmap and offset targets follow."""
        votes = self.votes_pred()
        if self.config.OM.LEARNABLE_CENTERS.DETACH:
            votes = votes.detach()
        n = votes.shape[0]
        idx = self.segment_index_truth().reshape(-1)
        flat = votes.permute(1, 0, 2, 3).reshape(2, -1)
        sums = torch.zeros(n * self.segment_table_size(), 2, device=votes.device, dtype=votes.dtype)
        sums = sums.index_add(0, idx, flat.T)
        area = self.segment_area_truth().reshape(-1, 1).clamp(min=1).to(votes.dtype)
        return (sums / area).view(n, -1, 2)
