"""The 'oracle-semantics' mixin: semantic logits made from the ground truth (the paper's oracle studies)."""
import torch
import torch.nn.functional as F

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
