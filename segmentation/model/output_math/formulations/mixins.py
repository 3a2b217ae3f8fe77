"""Mixins over Panoptic-DeepLab: each overrides only the variables it changes (Figure 7's orange block and the
oracle studies of the paper's Figure 4)."""
import torch
import torch.nn.functional as F

from ...loss.criterion import safe_div
from ..build import register_om
from ..core import OutputMath


@register_om("oracle-semantics", "mixin")
class OracleSemantics(OutputMath):
    """Semantic oracle: the logits become the ground truth (does the semantic branch limit PQ?)."""

    def semantic_logits_pred(self):
        """[N, C, H, W] float: 100 on the true class, 0 elsewhere; all 0 on ignored pixels (C = DATASET.NUM_CLASSES)."""
        sem = self.semantic_truth()
        valid = sem != self.metadata.ignore_label
        one_hot = F.one_hot(torch.where(valid, sem, 0), self.metadata.num_classes)
        return (100.0 * one_hot * valid[..., None]).permute(0, 3, 1, 2).float()


@register_om("oracle-centers", "mixin")
class OracleCenters(OutputMath):
    """Centre oracle: the predicted heatmap becomes the ground-truth heatmap."""

    def center_pred(self):
        """[N, 1, H, W] float32: center_truth."""
        return self.center_truth()


@register_om("oracle-offsets", "mixin")
class OracleOffsets(OutputMath):
    """Offset oracle: the predicted offsets become the ground-truth offsets."""

    def offset_pred(self):
        """[N, 2, H, W] float32: offset_truth."""
        return self.offset_truth()


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


@register_om("push-pull", "mixin")
class PushPull(OutputMath):
    """Push-pull offset loss: also penalise votes lying closer to another instance's centre than to their own."""

    def closest_truth_centroid(self):
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
        nearest_index = self.closest_truth_centroid().clamp(min=0)
        base = torch.arange(n, device=self.device).view(-1, 1, 1) * self.segment_table_size()
        near = cen[nearest_index + base].permute(0, 3, 1, 2)
        votes = self.votes_pred()
        gap = ((votes - own.to(votes.dtype)).abs() - (votes - near.to(votes.dtype)).abs()).sum(1)
        w = self.offset_weights()
        return safe_div((gap * w).sum(), 2 * w.sum())

    def offset_loss(self):
        """Scalar: the offset loss plus OM.PUSH_PULL.WEIGHT * push_pull_loss."""
        return super().offset_loss() + self.config.OM.PUSH_PULL.WEIGHT * self.push_pull_loss()


@register_om("cpu-tensors", "mixin")
class CPUTensors(OutputMath):
    """Shallow integration: read the data loader's targets (computed on CPU) instead of computing them."""

    def _loader_target(self, key):
        if key not in self.raw_batch:
            raise KeyError(f"The 'cpu-tensors' OM mixin reads the loader's '{key}', which is missing: set "
                           f"DATASET.PAN_ONLY False.")
        return self.raw_batch[key].to(self.device)

    def semantic_truth(self):
        """[N, H, W] long: the loader's semantic target."""
        return self._loader_target("semantic_truth").long()

    def center_truth(self):
        """[N, 1, H, W] float32: the loader's centre heatmap."""
        return self._loader_target("center_truth")

    def offset_truth(self):
        """[N, 2, H, W] float32: the loader's offsets."""
        return self._loader_target("offset_truth")

    def semantic_weights(self):
        """[N, H, W] float32: the loader's semantic weights."""
        return self._loader_target("semantic_weights_truth")

    def center_weights(self):
        """[N, H, W] float32: the loader's centre weights."""
        return self._loader_target("center_weights_truth")

    def offset_weights(self):
        """[N, H, W] float32: the loader's offset weights."""
        return self._loader_target("offset_weights_truth")
