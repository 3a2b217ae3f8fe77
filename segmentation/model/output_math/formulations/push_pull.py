"""The 'push-pull' mixin: an offset-loss term pushing votes away from other instances' centres."""
import torch

from ...loss.criterion import safe_div
from ..build import register_om
from ..core import OutputMath


@register_om("push-pull", "mixin")
class PushPull(OutputMath):
    """Push-pull offset loss: also penalise votes lying closer to another instance's centre than to their own."""

    def closest_centroid_truth(self):
        """[N, H, W] long: panoptic id of the non-crowd ground-truth instance whose centroid is nearest (squared
        distance) to each pixel's vote; -1 in images without instances. Chunked over pixels: memory bounded."""
        seg = self.thing_segments_truth()  # [N, K]
        crowd = self.segment_is_crowd().expand(seg.shape[0], -1).gather(1, seg.clamp(min=0))
        seg = torch.where((seg >= 0) & ~crowd, seg, -1)  # drop crowd
        cen = self.instance_centroids_truth().detach().to(torch.float32)
        votes = self.votes_pred().detach().flatten(2)  # [N, 2, HW]
        n, k, hw = seg.shape[0], seg.shape[1], votes.shape[-1]
        out = torch.empty(n, hw, dtype=torch.long, device=votes.device)
        step = max(1, (1 << 22) // max(1, n * k))
        big = torch.finfo(torch.float32).max
        for start in range(0, hw, step):
            v = votes[..., start:start + step]  # [N, 2, P]
            d = (cen[..., 0:1] - v[:, None, 0]) ** 2 + (cen[..., 1:2] - v[:, None, 1]) ** 2  # [N, K, P]
            d = torch.where(seg[..., None] >= 0, d, big)
            out[:, start:start + step] = seg.gather(1, d.argmin(1))
        return out.view(n, *self.offset_pred().shape[-2:])

    def push_pull_loss(self):
        """Scalar: offset-weighted mean over pixels of L1(vote, own centre) - L1(vote, nearest centre), per
        channel as the offset loss (the paper's lambda_wrc term)."""
        n = self.panoptic_truth().shape[0]
        cen = self.centroids_truth().reshape(-1, 2)
        own = cen[self.segment_index_truth()].permute(0, 3, 1, 2)
        nearest_index = self.closest_centroid_truth().clamp(min=0)
        base = torch.arange(n, device=self.device).view(-1, 1, 1) * self.segment_table_size()
        near = cen[nearest_index + base].permute(0, 3, 1, 2)
        votes = self.votes_pred()
        gap = ((votes - own.to(votes.dtype)).abs() - (votes - near.to(votes.dtype)).abs()).sum(1)
        w = self.offset_weights_truth()
        return safe_div((gap * w).sum(), 2 * w.sum())

    def offset_loss(self):
        """Scalar: the offset loss plus OM.PUSH_PULL.WEIGHT * push_pull_loss."""
        return super().offset_loss() + self.config.OM.PUSH_PULL.WEIGHT * self.push_pull_loss()
