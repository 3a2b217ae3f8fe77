"""The 'size-adaptive-sigma' mixin: one Gaussian standard deviation per instance, from its bounding box.

Source: CenterNet (Zhou et al., "Objects as Points", 2019) draws each centre with an "object size-adaptive
standard deviation": sigma = diameter / 6 with diameter = 2 r + 1 and r the radius of CornerNet (Law & Deng, 2018)
within which a box corner may move while the box keeps an IoU of at least OM.SIZE_ADAPTIVE_SIGMA.MIN_OVERLAP with
the true one (the smallest root of its three quadratic cases, as their released code computes it, truncated to an
integer). Figure 7: ``center_truth`` changes (through ``instance_sigma_truth``); what reads the heatmap follows.
"""
import torch

from ....data.transforms.target_transforms import draw_adaptive_center_heatmap
from ..build import register_om
from ..core import OutputMath, role


def cornernet_radius(height, width, min_overlap):
    """Float64 tensor like ``height``: CornerNet's Gaussian radius for boxes of these sizes (pixels)."""
    h, w, o = height.to(torch.float64), width.to(torch.float64), min_overlap

    def root(a, b, c):  # their code's (b + sqrt(b^2 - 4ac)) / 2 for each case
        return (b + torch.sqrt((b ** 2 - 4 * a * c).clamp(min=0))) / 2

    r1 = root(1.0, h + w, w * h * (1 - o) / (1 + o))
    r2 = root(4.0, 2 * (h + w), (1 - o) * w * h)
    r3 = root(4 * o, -2 * o * (h + w), (o - 1) * w * h)
    return torch.minimum(torch.minimum(r1, r2), r3)


@register_om("size-adaptive-sigma", "mixin")
class SizeAdaptiveSigma(OutputMath):
    """Size-adaptive centre heatmap: each instance's Gaussian has CenterNet's standard deviation for its box,
    clipped to [OM.SIZE_ADAPTIVE_SIGMA.MIN_SIGMA, MAX_SIGMA] pixels."""

    @role("intermediate")
    def segment_box_truth(self):
        """[N, L, 4] long: (top, left, bottom, right) inclusive pixel bounds of every segment (absent ids:
        top/left H*W, bottom/right -1)."""
        idx = self.segment_index_truth()
        n, h, w = idx.shape
        flat = idx.reshape(-1)
        size = n * self.segment_table_size()
        rows = torch.arange(h, device=self.device).view(1, h, 1).expand(n, h, w).reshape(-1)
        cols = torch.arange(w, device=self.device).view(1, 1, w).expand(n, h, w).reshape(-1)
        low = torch.full((size,), h * w, dtype=torch.long, device=self.device)
        high = torch.full((size,), -1, dtype=torch.long, device=self.device)
        box = [low.scatter_reduce(0, flat, rows, "amin"), low.scatter_reduce(0, flat, cols, "amin"),
               high.scatter_reduce(0, flat, rows, "amax"), high.scatter_reduce(0, flat, cols, "amax")]
        return torch.stack(box, dim=-1).view(n, -1, 4)

    def instance_sigma_truth(self):
        """[N, K] float64: Gaussian std (pixels) of each segment of thing_segments_truth: (2 * floor(r) + 1) / 6
        for CornerNet's radius r of its box, clipped to [MIN_SIGMA, MAX_SIGMA] (padding rows: arbitrary)."""
        c = self.config.OM.SIZE_ADAPTIVE_SIGMA
        seg = self.thing_segments_truth().clamp(min=0)
        box = self.segment_box_truth().gather(1, seg[..., None].expand(-1, -1, 4))
        height, width = (box[..., 2] - box[..., 0] + 1).clamp(min=1), (box[..., 3] - box[..., 1] + 1).clamp(min=1)
        radius = torch.floor(cornernet_radius(height, width, c.MIN_OVERLAP))
        return ((2 * radius + 1) / 6).clamp(c.MIN_SIGMA, c.MAX_SIGMA)

    def center_truth(self):
        """[N, 1, H, W] float32: max of Gaussians with std instance_sigma_truth (window ceil(3 sigma + 1) pixels
        each side) at the truncated centroid of every thing segment."""
        cen = self.instance_centroids_truth()
        h, w = self.panoptic_truth().shape[-2:]
        return draw_adaptive_center_heatmap(cen[..., 0], cen[..., 1], h, w, self.instance_sigma_truth(),
                                            self.config.OM.SIZE_ADAPTIVE_SIGMA.MAX_SIGMA,
                                            valid=self.thing_segments_truth() >= 0)
