"""The network at test time: padding (TEST.PAD_TO_CROP_SIZE), and test-time augmentation (flip, multi-scale).

Both return the network's output dict at the size of the input images, so that the conventional decoding and the
OM (``OutputMathModel.build``) read them the same way.
"""
import torch
import torch.nn.functional as F

from ..model.meta_arch.base import pad_test_images

# Outputs that are class scores (averaged as probabilities) and displacement fields in pixels (rescaled and mirrored).
PROBABILITY_KEYS = ("semantic",)
DISPLACEMENT_KEYS = ("offset",)


@torch.no_grad()
def predict(net, images):
    """Network outputs at the size of ``images`` (padded internally as the network's test_crop_size says)."""
    h, w = images.shape[-2:]
    out = net(pad_test_images(images, getattr(getattr(net, "module", net), "test_crop_size", None)))
    return {k: v[..., :h, :w] for k, v in out.items()}


def tta_enabled(cfg):
    """True when TEST.TEST_TIME_AUGMENTATION, TEST.FLIP_TEST or a TEST.SCALE_LIST other than (1,) asks for it."""
    t = cfg.TEST
    return bool(t.TEST_TIME_AUGMENTATION or t.FLIP_TEST or tuple(float(s) for s in t.SCALE_LIST) != (1.0,))


def _resize(x, size):
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear",
                                                                        align_corners=False)


@torch.no_grad()
def predict_tta(net, images, scales=(1.0,), flip=False):
    """Outputs averaged over scales and horizontal flips, at the size of ``images``; decode them once.

    Each scale resizes the (normalised) images bilinearly, each flip mirrors them; every output is brought back to
    the input frame (mirrored back, resized bilinearly with ``align_corners=False``) and averaged: class scores
    (PROBABILITY_KEYS) as softmax probabilities, returned as their logarithm so that softmax and argmax of the
    result are the averaged probabilities and their argmax; displacements in pixels (DISPLACEMENT_KEYS, (y, x)
    channels) are multiplied by the resize factor of their axis and have x negated when mirrored; everything else
    (the centre heatmap) is averaged as it is. One view at scale 1 is ``predict`` itself (the logits unchanged).
    """
    if not scales:
        raise ValueError("TEST.SCALE_LIST must name at least one scale, e.g. (1.0,) or (0.75, 1.0, 1.25).")
    if tuple(scales) == (1.0,) and not flip:
        return predict(net, images)
    h, w = images.shape[-2:]
    sums, count = {}, 0
    for scale in scales:
        if scale <= 0:
            raise ValueError(f"TEST.SCALE_LIST holds {scale}: scales must be positive.")
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        scaled = _resize(images, size)
        for mirrored in (False, True) if flip else (False,):
            out = predict(net, scaled.flip(-1) if mirrored else scaled)
            for key, value in out.items():
                value = value.float()
                if mirrored:
                    value = value.flip(-1)
                if key in PROBABILITY_KEYS:
                    value = torch.softmax(value, dim=1)
                value = _resize(value, (h, w))
                if key in DISPLACEMENT_KEYS:
                    factor = value.new_tensor([h / size[0], (-1.0 if mirrored else 1.0) * w / size[1]])
                    value = value * factor.view(1, 2, 1, 1)
                sums[key] = sums[key] + value if key in sums else value
            count += 1
    out = {key: value / count for key, value in sums.items()}
    for key in PROBABILITY_KEYS:
        if key in out:
            out[key] = torch.log(out[key])
    return out


def network_outputs(cfg, net, images):
    """``predict`` or, when ``tta_enabled(cfg)``, ``predict_tta`` with TEST.SCALE_LIST and TEST.FLIP_TEST."""
    if not tta_enabled(cfg):
        return predict(net, images)
    return predict_tta(net, images, tuple(float(s) for s in cfg.TEST.SCALE_LIST), bool(cfg.TEST.FLIP_TEST))
