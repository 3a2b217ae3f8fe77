"""The 'cpu-tensors' mixin: read the loader's CPU targets instead of computing them (shallow integration)."""
from ..build import register_om
from ..core import OutputMath


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

    def semantic_weights_truth(self):
        """[N, H, W] float32: the loader's semantic weights."""
        return self._loader_target("semantic_weights_truth")

    def center_weights_truth(self):
        """[N, H, W] float32: the loader's centre weights."""
        return self._loader_target("center_weights_truth")

    def offset_weights_truth(self):
        """[N, H, W] float32: the loader's offset weights."""
        return self._loader_target("offset_weights_truth")
