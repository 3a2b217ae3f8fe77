"""Benchmark of the Panoptic-DeepLab decoding (prints numbers, asserts nothing).

    python tools/benchmark_decoding.py [--height 1024 --width 2048 --classes 19 --repeat 7] [--skip-original]

A synthetic street scene is rendered at the given size and turned into realistic network outputs: semantic logits
over ``--classes`` channels (the scene's classes plus noise), the Gaussian centre heatmap of its instances plus sparse
spurious peaks, and its offsets plus noise. Freed memory is kept as in evaluation on CPU (CPU_KEEP_FREED_MEMORY;
``--default-allocator`` to compare). Printed, medians of ``--repeat`` runs in this process:

1. each stage of ``get_panoptic_segmentation`` (semantic argmax, centre NMS and top-k, grouping, merge), the total,
   and the memory floor measured beside it (the logits read once);
2. the same decoding through the OM (``panoptic_pred``);
3. the original repository's rules written plainly (``post_processing.reference``: full K x H x W distances, loops
   over instances and classes), timed once, and whether its panoptic map equals ours.
"""
import argparse
import os
import time

import numpy as np
import torch
from _common import median_time

from segmentation.config import load_config
from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.data.datasets import render_scene
from segmentation.data.transforms import PanopticTargetGenerator
from segmentation.model.output_math import compose
from segmentation.model.post_processing import (
    find_instance_center,
    get_panoptic_segmentation,
    get_semantic_segmentation,
    group_pixels,
    merge_semantic_and_instance,
    thing_mask,
)
from segmentation.model.post_processing.reference import reference_panoptic
from segmentation.utils.memory import keep_freed_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, "configs/synthetic/om_panoptic_deeplab_mbv2_synthetic.yaml")


def network_outputs(h, w, classes, objects, seed=2):
    """(logits [1, C, H, W], heatmap [1, 1, H, W], offsets [1, 2, H, W]) of one rendered scene."""
    rng = np.random.default_rng(seed)
    _, ids, segs = render_scene(rng, h, w, max_objects=objects, crowd_prob=0.0)
    t = PanopticTargetGenerator(255, lambda x: x, META.thing_ids, sigma=8)(ids, segs)
    g = torch.Generator().manual_seed(seed)
    sem = t["semantic"].clamp(max=META.num_classes - 1)
    logits = torch.randn(1, classes, h, w, generator=g)
    logits[:, :META.num_classes] += 3 * torch.nn.functional.one_hot(sem, META.num_classes).permute(2, 0, 1)[None]
    spurious = 0.3 * torch.rand(1, h, w, generator=g) * (torch.rand(1, h, w, generator=g) > 0.99998)
    heat = (t["center"] + spurious)[None]
    offsets = t["offset"][None] + 0.5 * torch.randn(1, 2, h, w, generator=g)
    return logits, heat, offsets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=19, help="semantic channels (Cityscapes: 19)")
    parser.add_argument("--objects", type=int, default=80, help="objects drawn in the scene")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-original", action="store_true", help="do not time the original's rules (~10 s)")
    parser.add_argument("--default-allocator", action="store_true", help="do not keep freed memory (evaluation "
                        "keeps it on CPU: CPU_KEEP_FREED_MEMORY)")
    args = parser.parse_args(argv)
    if not args.default_allocator:
        keep_freed_memory()
    cfg = load_config(CFG, ["POST_PROCESSING.STUFF_AREA", "2048"])
    pp = cfg.POST_PROCESSING
    logits, heat, offsets = network_outputs(args.height, args.width, args.classes, args.objects)
    things, div, void = META.thing_ids, META.label_divisor, META.void_label
    options = dict(threshold=pp.CENTER_THRESHOLD, nms_kernel=pp.NMS_KERNEL, top_k=pp.TOP_K_INSTANCE)

    def ours():
        return get_panoptic_segmentation(logits, heat, offsets, things, div, pp.STUFF_AREA, void, **options)

    def through_om(scene_logits):
        raw = {"semantic_pred": scene_logits, "center_pred": heat, "offset_pred": offsets}
        return compose("panoptic-deeplab")(raw, config=cfg, metadata=META).panoptic_pred()

    pan, ctr = ours()
    sem = get_semantic_segmentation(logits)
    things_px = thing_mask(sem, things)
    centres = find_instance_center(heat, **options)
    ins = group_pixels(centres, offsets, things_px[0])
    stages = {
        "semantic argmax": lambda: get_semantic_segmentation(logits),
        "centres (threshold, NMS, top-k)": lambda: find_instance_center(heat, **options),
        "thing mask": lambda: thing_mask(sem, things),
        "grouping": lambda: group_pixels(centres, offsets, things_px[0]),
        "merge": lambda: merge_semantic_and_instance(sem, ins, things_px, div, things, pp.STUFF_AREA, void),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"1. get_panoptic_segmentation at {args.height}x{args.width}, {args.classes} classes, {ctr.shape[1]} "
          f"centres, {int(things_px.sum())} thing pixels (median of {args.repeat})")
    for name, fn in stages.items():
        print(f"   {name:32s} {1e3 * median_time(fn, args.repeat):7.1f} ms")
    t_ours = median_time(ours, args.repeat)
    print(f"   {'total':32s} {1e3 * t_ours:7.1f} ms")
    t_read = median_time(lambda: logits.amax(1), args.repeat)
    print(f"   memory floor (reading the {args.classes} logit planes once, amax) {1e3 * t_read:.1f} ms   "
          f"total / floor {t_ours / t_read:.1f}")
    scene_logits = logits[:, :META.num_classes].contiguous()
    om_pan = through_om(scene_logits)
    same = torch.equal(om_pan, get_panoptic_segmentation(scene_logits, heat, offsets, things, div, pp.STUFF_AREA,
                                                         void, **options)[0])
    t_om = median_time(lambda: through_om(scene_logits), args.repeat)
    t_pure = median_time(lambda: get_panoptic_segmentation(scene_logits, heat, offsets, things, div, pp.STUFF_AREA,
                                                           void, **options), args.repeat)
    print(f"2. on the scene's {META.num_classes} classes: OM panoptic_pred {1e3 * t_om:.1f} ms   "
          f"get_panoptic_segmentation {1e3 * t_pure:.1f} ms   ratio {t_om / t_pure:.2f}   identical maps: {same}")
    if args.skip_original:
        return
    t0 = time.perf_counter()
    ref, _ = reference_panoptic(logits, heat, offsets, things, div, pp.STUFF_AREA, void, **options)
    t_ref = time.perf_counter() - t0
    print(f"3. the original's rules (K x H x W distances, loops): {t_ref:.2f} s, {t_ref / t_ours:.0f}x ours; "
          f"identical panoptic maps: {torch.equal(ref, pan)}")


if __name__ == "__main__":
    main()
