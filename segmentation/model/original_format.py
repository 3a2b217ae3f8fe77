"""Checkpoints of the original Panoptic-DeepLab repository (bowenc0221/panoptic-deeplab, also kept by the ModulOM
repository): detected by their key names and renamed to this repository's modules.

The networks are the same; three modules are arranged differently:
* ASPP: the original's image pooling is ``aspp_pooling`` (pool, conv, ReLU) and its projection a flat Sequential;
* fuse convs (depthwise-separable): the original nests the depthwise conv + BN in a Sequential and keeps the
  pointwise conv and BN flat; here the pointwise conv + BN + ReLU is one basic conv;
* heads: the original keeps each head's fuse conv and classifier in one Sequential ``classifier.<key>``; here they
  are ``fuse.<key>`` and ``classifier.<key>``.
DeepLabV3 (classifier Sequential -> conv + classifier), DeepLabV3+ (its decoder is the one-skip Panoptic-DeepLab
decoder here) and Xception-65 (middle-flow ``block4``..``block19`` -> ``midflow.0``..``midflow.15``) have their
own tables. Every other key (the ResNet, ResNeXt, MobileNetV2 and HRNet backbones, the projections, the atrous ASPP
branches) is the same. The tables are first-match lists of (pattern of a whole original key, replacement);
tests/model/test_original_format.py checks that they map every key of the original's models (the key lists in
shared/reference/original-checkpoints) one to one onto this repository's.
"""
import logging
import re

from ..utils.checkpoint import model_state

logger = logging.getLogger(__name__)

# a parameter or buffer name at the end of a key
_LEAF = r"\.(?P<leaf>weight|bias|running_mean|running_var|num_batches_tracked)"

# The original's ASPP image pooling key: every original model has one, no model of this repository does.
ORIGINAL_SIGNATURE = re.compile(r".*\.aspp\.convs\.4\.aspp_pooling\..*")


def _aspp(prefix, out):
    """ASPP rules for the ASPP at ``prefix`` (a regex), renamed to ``out`` (a template)."""
    return [(prefix + r"\.aspp\.convs\.4\.aspp_pooling\.1" + _LEAF, out + r".aspp.convs.4.conv.0.\g<leaf>"),
            (prefix + r"\.aspp\.project\.(?P<i>[01])" + _LEAF, out + r".aspp.project.0.\g<i>.\g<leaf>"),
            (prefix + r"\.aspp\.(?P<rest>convs\.[0-3]\.[01])" + _LEAF, out + r".aspp.\g<rest>.\g<leaf>")]


def _depthwise_separable(original, ours):
    """A depthwise-separable conv at ``original`` (dw conv + BN nested, pointwise conv and BN flat) -> ``ours``."""
    return [(original + r"\.0\.(?P<i>[01])" + _LEAF, ours + r".\g<i>.\g<leaf>"),
            (original + r"\.1" + _LEAF, ours + r".3.0.\g<leaf>"),
            (original + r"\.2" + _LEAF, ours + r".3.1.\g<leaf>")]


_DECODER = r"(?P<d>decoder\.(?:semantic|instance)_decoder)"
_HEAD = r"(?P<h>decoder\.(?:semantic|instance)_head)\.classifier\.(?P<k>\w+)"
PANOPTIC_DEEPLAB = [
    *_aspp(_DECODER, r"\g<d>"),
    *_depthwise_separable(_DECODER + r"\.fuse\.(?P<n>\d+)\.0", r"\g<d>.fuse.\g<n>"),
    *_depthwise_separable(_HEAD + r"\.0\.0", r"\g<h>.fuse.\g<k>"),
    (_HEAD + r"\.1" + _LEAF, r"\g<h>.classifier.\g<k>.\g<leaf>"),
]
DEEPLABV3 = [
    *_aspp(r"decoder", "decoder"),
    (r"decoder\.classifier\.(?P<i>[01])" + _LEAF, r"decoder.conv.\g<i>.\g<leaf>"),
    (r"decoder\.classifier\.3" + _LEAF, r"decoder.classifier.\g<leaf>"),
]
DEEPLABV3PLUS = [
    *_aspp(r"decoder", "decoder.decoder"),
    (r"decoder\.project\.(?P<i>[01])" + _LEAF, r"decoder.decoder.project.0.\g<i>.\g<leaf>"),
    *_depthwise_separable(r"decoder\.fuse\.(?P<s>[01])", r"decoder.decoder.fuse.0.\g<s>"),
]
XCEPTION65 = [
    (r"backbone\.block(?P<n>[4-9]|1[0-9])\.(?P<rest>.+)",
     lambda m: f"backbone.midflow.{int(m['n']) - 4}.{m['rest']}"),
]

# meta-architecture: (a key only its original models have, rename table)
META_ARCHITECTURES = {
    "panoptic_deeplab": ("decoder.semantic_decoder.aspp.convs.4.aspp_pooling.1.weight", PANOPTIC_DEEPLAB),
    "deeplabv3plus": ("decoder.project.0.weight", DEEPLABV3PLUS),
    "deeplabv3": ("decoder.classifier.3.weight", DEEPLABV3),
}
# backbone family: (a key only its original models have, rename table); no entry: the same names
BACKBONES = {"xception": ("backbone.block4.sep_conv1.block.depthwise.weight", XCEPTION65)}


def is_original_state(state: dict) -> bool:
    """True when ``state`` (a state dict) is in the original repository's format."""
    return any(ORIGINAL_SIGNATURE.fullmatch(key) for key in state)


def _compile(table):
    return [(re.compile(pattern), replacement) for pattern, replacement in table]


def _rename(key, tables):
    for table in tables:
        for pattern, replacement in table:
            m = pattern.fullmatch(key)
            if m:
                key = replacement(m) if callable(replacement) else m.expand(replacement)
                break
    return key


def convert_original_state(state: dict) -> tuple[dict, str]:
    """(this repository's state dict, description) from an original state dict; the tensors are not copied.
    Raises ValueError when the meta-architecture is not one of the original's or two keys would collide."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}  # DDP-saved
    meta = [name for name, (key, _) in META_ARCHITECTURES.items() if key in state]
    if len(meta) != 1:
        raise ValueError("The checkpoint has the original repository's ASPP but none of the decoders of its "
                         f"meta-architectures ({', '.join(META_ARCHITECTURES)}): it cannot be converted.")
    backbone = [name for name, (key, _) in BACKBONES.items() if key in state]
    tables = [_compile(BACKBONES[b][1]) for b in backbone] + [_compile(META_ARCHITECTURES[meta[0]][1])]
    converted, renamed = {}, 0
    for key, value in state.items():
        new = _rename(key, tables)
        if new in converted:
            raise ValueError(f"Two keys of the original checkpoint map to '{new}': the rename table is wrong.")
        converted[new] = value
        renamed += new != key
    family = f"{meta[0]}, {backbone[0]} backbone" if backbone else meta[0]
    return converted, f"original repository's format ({family}): {renamed} of {len(state)} keys renamed"


def model_state_dict(checkpoint, path: str) -> dict:
    """The model's state dict of a loaded checkpoint (this repository's, or the original's ``final_state.pth`` /
    ``checkpoint.pth.tar``, converted with a log line)."""
    state = model_state(checkpoint)
    if isinstance(state, dict) and is_original_state(state):
        state, description = convert_original_state(state)
        logger.info("%s is in the %s.", path, description)
    return state
