"""The network and its decoding as one module of tensors, for deployment without the OM or Python.

``PanopticExportModel`` runs the network on a normalised image [1, 3, H, W] and decodes it with the static-shape
functions of ``post_processing/static.py``; ``export_model`` writes it as TorchScript (traced) or ONNX. The export
is for a fixed input size (the example image's), as the original's fixed TEST.CROP_SIZE: export once per size.
With ``outputs="network"`` the module stops at the network's outputs (for a runtime that should run only the
network, such as TensorRT; decode them with ``static_panoptic`` or ``get_panoptic_segmentation``).
"""
import warnings

import torch
import torch.nn as nn

from .meta_arch.base import pad_test_images
from .post_processing.static import static_panoptic

EXPORT_FORMATS = ("torchscript", "onnx")
# what the exported module returns (--outputs of tools/export.py) -> the names of its outputs, in order:
# panoptic ids long [1, H, W] (train-id encoding), semantic train ids long [1, H, W], and the network's outputs
# cropped to the input: semantic logits [1, C, H, W], centre heatmap [1, 1, H, W], offsets [1, 2, H, W] (y, x pixels)
EXPORT_OUTPUTS = {
    "panoptic": ("panoptic", "semantic"),  # the decoded maps (the default)
    "network": ("semantic_logits", "center", "offset"),  # the network alone, no decoding
    "all": ("panoptic", "semantic", "semantic_logits", "center", "offset"),  # both (to check another runtime)
}
NETWORK_OUTPUTS = EXPORT_OUTPUTS["network"]


class PanopticExportModel(nn.Module):
    """``forward(image [1, 3, H, W])`` -> the tensors ``EXPORT_OUTPUTS[outputs]`` names (by default the panoptic
    and semantic maps); decoding with POST_PROCESSING.* (TOP_K_INSTANCE bounds the number of centres)."""

    def __init__(self, net, metadata, post_processing, outputs="panoptic"):
        super().__init__()
        if outputs not in EXPORT_OUTPUTS:
            raise ValueError(f"Unknown export outputs '{outputs}'; valid: {', '.join(EXPORT_OUTPUTS)}.")
        self.net = net
        self.outputs = outputs
        table = torch.zeros(metadata.num_classes, dtype=torch.bool)
        table[list(metadata.thing_ids)] = True
        self.register_buffer("thing_table", table, persistent=False)
        pp = post_processing
        self.label_divisor, self.void_label = metadata.label_divisor, metadata.void_label
        self.stuff_area, self.threshold, self.nms_kernel = pp.STUFF_AREA, pp.CENTER_THRESHOLD, pp.NMS_KERNEL
        if not pp.TOP_K_INSTANCE or pp.TOP_K_INSTANCE <= 0:
            raise ValueError("Export needs POST_PROCESSING.TOP_K_INSTANCE > 0: it bounds the number of centres.")
        self.max_centers = pp.TOP_K_INSTANCE

    @property
    def output_names(self):
        """Names of the tensors ``forward`` returns, in order."""
        return EXPORT_OUTPUTS[self.outputs]

    def decode(self, logits, heat, offsets):
        """Panoptic ids [H, W] (long) of logits [C, H, W], heatmap [H, W] and offsets [2, H, W]: the exported
        decoding."""
        return static_panoptic(logits, heat, offsets, self.thing_table, self.label_divisor, self.stuff_area,
                               self.void_label, self.threshold, self.nms_kernel, self.max_centers)

    def forward(self, image):
        h, w = image.shape[-2:]
        out = self.net(pad_test_images(image, self.net.test_crop_size))
        logits, heat, offsets = out["semantic"][0, :, :h, :w], out["center"][0, 0, :h, :w], out["offset"][0, :, :h, :w]
        values = {"semantic_logits": logits[None], "center": heat[None, None], "offset": offsets[None]}
        if self.outputs != "network":
            values["panoptic"] = self.decode(logits, heat, offsets)[None]
            values["semantic"] = torch.argmax(logits, dim=0)[None]
        return tuple(values[name] for name in self.output_names)


def export_model(model, example, path, fmt):
    """Write ``model`` (a PanopticExportModel in eval mode) traced on ``example`` [1, 3, H, W] as ``fmt``."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format '{fmt}'; valid: {', '.join(EXPORT_FORMATS)}.")
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # tracing warns about every Python int taken from a shape: the export is for this input size by design;
        # torch 2.13 marks TorchScript deprecated (ONNX is the format to prefer), which the user learns from README
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.* is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # inside torch.export
        if fmt == "torchscript":
            torch.jit.trace(model, (example,), check_trace=False).save(path)
        else:
            torch.onnx.export(model, (example,), path, input_names=["image"], output_names=list(model.output_names),
                              dynamo=True, external_data=False)
    return path
