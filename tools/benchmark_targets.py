"""Benchmark of the loader's CPU target generator against the original's rules (prints numbers, asserts nothing).

    python tools/benchmark_targets.py [--height 1024 --width 2048 --things 24 --scenes 3 --repeat 5]

On synthetic scenes with about ``--things`` thing segments (and stuff, crowd, void): per sample, the median time of
``PanopticTargetGenerator`` (what every real dataset's loader runs, one thread and freed memory kept as in a loader
worker of training) and of the
original repository's rules written plainly (``segmentation.data.transforms.reference``: one full-image mask per
segment), over ``--repeat`` rounds interleaving the two: the medians, the median of the per-round ratios with their
range, and whether every target is bit-identical.
"""
import argparse
import functools
import statistics
import sys

import numpy as np
import torch
from _common import median_time

from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.data.datasets import render_scene
from segmentation.data.transforms import PanopticTargetGenerator
from segmentation.data.transforms.reference import reference_targets
from segmentation.utils.memory import keep_freed_memory


def scenes(n, h, w, things, seed=0):
    """``n`` scenes with at least ``things`` thing segments (rendered until enough)."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        _, ids, segs = render_scene(rng, h, w, max_objects=things + 4)
        if sum(s["category_id"] in META.thing_ids for s in segs) >= things:
            out.append((ids, segs))
    return out


def identical(ours, ref):
    keys = ("semantic", "foreground", "center", "offset", "semantic_weights", "center_weights", "offset_weights")
    return all(np.array_equal(ours[k].numpy(), ref[k]) for k in keys) and ours["center_points"] == ref[
        "center_points"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--things", type=int, default=24)
    p.add_argument("--scenes", type=int, default=3)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a loader worker's setting
    keep_freed_memory()  # training's allocator setting (CPU_KEEP_FREED_MEMORY), inherited by its loader workers
    options = {"ignore_label": META.ignore_label, "sigma": 8, "small_instance_area": 4096,
               "small_instance_weight": 3}
    gen = PanopticTargetGenerator(META.ignore_label, lambda x: x, META.thing_ids, sigma=8, small_instance_area=4096,
                                  small_instance_weight=3)
    data = scenes(args.scenes, args.height, args.width, args.things)
    print(f"torch {torch.__version__}, 1 thread; {args.scenes} scenes of {args.height}x{args.width}, "
          f"{np.mean([sum(s['category_id'] in META.thing_ids for s in segs) for _, segs in data]):.0f} thing "
          f"segments on average")
    ref_rules = functools.partial(reference_targets, thing_list=META.thing_ids, **options)
    for ids, segs in data:  # warm up both
        gen(ids, segs), ref_rules(ids, segs)
    ours, ref = [], []
    for _ in range(args.repeat):  # rounds, the two interleaved: a slow moment of the machine hits both
        ours.append(sum(median_time(lambda i=i, s=s: gen(i, s), 3, warmup=False) for i, s in data) / len(data))
        ref.append(sum(median_time(lambda i=i, s=s: ref_rules(i, s), 1, warmup=False) for i, s in data) / len(data))
    same = all(identical(gen(ids, segs), ref_rules(ids, segs)) for ids, segs in data)
    ratios = sorted(r / o for r, o in zip(ref, ours))
    print(f"PanopticTargetGenerator {1e3 * statistics.median(ours):.1f} ms per sample   original rules "
          f"{1e3 * statistics.median(ref):.1f} ms   ratio {statistics.median(ratios):.1f}x (rounds: "
          f"{ratios[0]:.1f}-{ratios[-1]:.1f}x)   targets bit-identical: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
