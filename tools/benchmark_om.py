"""Benchmark of the output-mathematics machinery and of the Panoptic-DeepLab OM (prints numbers, asserts nothing).

    python tools/benchmark_om.py [--repeat 7] [--quick] [--compile]

Every comparison is a ratio of two timings taken in the same process on the same inputs (medians of --repeat runs):

1. memoization: a cache hit and a miss against a plain method call (µs);
2. OM calls per training step on batches with few and many instances, and their estimated cost;
3. targets for a batch of 4 crops of 512x1024: OM (on the batch) against the CPU generator (image by image), with
   freed memory kept as in training (CPU_KEEP_FREED_MEMORY), the memory floor, the OM again with glibc's default
   allocator, and with ``--compile`` the OM's targets compiled with inductor in one graph;
4. decoding at 1024x2048 with ~50 centres: OM ``panoptic_pred`` against ``get_panoptic_segmentation``;
5. a training step (forward, OM targets and losses, backward) of learnable-centers + push-pull against the plain OM.
"""
import argparse
import os
import subprocess
import sys
import time
import timeit

import numpy as np
import torch
from _common import median_time

from segmentation.config import load_config
from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.data.datasets import render_scene
from segmentation.data.transforms import PanopticTargetGenerator, encode_panoptic
from segmentation.model.loss import WeightedL1, WeightedMSE, build_loss
from segmentation.model.output_math import OutputMath, compose
from segmentation.model.post_processing import get_panoptic_segmentation
from segmentation.utils.memory import keep_freed_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, "configs/synthetic/om_panoptic_deeplab_mbv2_synthetic.yaml")


def bench_machinery(repeat):
    class Plain:
        def value(self):
            return 1

    class Om(OutputMath):
        def value(self):
            return 1

    plain, om = Plain(), Om({})
    om.value()
    n = 200_000
    t_plain = min(timeit.repeat(plain.value, number=n, repeat=repeat)) / n
    t_hit = min(timeit.repeat(om.value, number=n, repeat=repeat)) / n

    def misses():
        for _ in range(1000):
            Om({}).value()
    t_new = min(timeit.repeat(lambda: [Om({}) for _ in range(1000)], number=1, repeat=repeat)) / 1000
    t_miss = min(timeit.repeat(misses, number=1, repeat=repeat)) / 1000 - t_new
    print("1. memoization (µs per call)")
    print(f"   plain method call {1e6 * t_plain:.3f}   cache hit {1e6 * t_hit:.3f}   cache miss overhead "
          f"{1e6 * t_miss:.3f}   instance creation {1e6 * t_new:.3f}")
    return t_hit, t_miss


def _scenes(n, h, w, max_objects, seed=0):
    rng = np.random.default_rng(seed)
    return [render_scene(rng, h, w, max_objects=max_objects, crowd_prob=0.5) for _ in range(n)]


def _cfg(opts=()):
    return load_config(CFG, ["DATASET.GAUSSIAN_SIGMA", "8", "DATASET.SMALL_INSTANCE_AREA", "4096",
                             "DATASET.SMALL_INSTANCE_WEIGHT", "3", "OM.MAX_INSTANCES", "128", *opts])


def _losses(cfg):
    return {"semantic": build_loss(cfg.LOSS.SEMANTIC, 255), "center": WeightedMSE(), "offset": WeightedL1()}


def bench_calls(t_hit, t_miss):
    cfg = _cfg()
    print("2. OM calls in a training step (targets + losses), 4 crops of 128x256")
    for max_objects in (3, 30):
        scenes = _scenes(4, 128, 256, max_objects)
        pan = torch.stack([encode_panoptic(ids, segs, META) for _, ids, segs in scenes])
        raw = {"panoptic_truth": pan, "semantic_pred": torch.randn(4, 7, 128, 256),
               "center_pred": torch.rand(4, 1, 128, 256), "offset_pred": torch.randn(4, 2, 128, 256)}
        om = compose("panoptic-deeplab")(raw, config=cfg, metadata=META, losses=_losses(cfg))
        t0 = time.perf_counter()
        om.logged_losses()
        step = time.perf_counter() - t0
        stats = om.stats().values()
        hits, misses = sum(r["hits"] for r in stats), sum(r["misses"] for r in stats)
        things = sum(sum(s["category_id"] in META.thing_ids for s in segs) for _, _, segs in scenes)
        cost = hits * t_hit + misses * t_miss
        print(f"   {things:3d} thing segments: {hits + misses} calls ({hits} hits, {misses} misses), machinery "
              f"~{1e6 * cost:.1f} µs = {100 * cost / step:.3f}% of the {1e3 * step:.1f} ms OM computation")


def bench_targets(repeat, h, w, only_om=False, compiled=False):
    cfg = _cfg()
    d = cfg.DATASET
    scenes = _scenes(4, h, w, 30, seed=1)
    gen = PanopticTargetGenerator(255, lambda x: x, META.thing_ids, sigma=d.GAUSSIAN_SIGMA,
                                  ignore_stuff_in_offset=d.IGNORE_STUFF_IN_OFFSET,
                                  small_instance_area=d.SMALL_INSTANCE_AREA,
                                  small_instance_weight=d.SMALL_INSTANCE_WEIGHT)
    pan = torch.stack([encode_panoptic(ids, segs, META) for _, ids, segs in scenes])
    names = ("semantic_truth", "center_truth", "offset_truth", "semantic_weights_truth", "center_weights_truth",
             "offset_weights_truth")

    def om_targets(pan=pan):
        om = compose("panoptic-deeplab")({"panoptic_truth": pan}, config=cfg, metadata=META)
        return tuple(getattr(om, name)() for name in names)

    def cpu_targets():
        for _, ids, segs in scenes:
            gen(ids, segs)

    shapes = [(torch.long, 1), (torch.float32, 1), (torch.float32, 2), (torch.float32, 1), (torch.float32, 1),
              (torch.float32, 1)]  # the six targets: dtype, planes per image

    def floor():
        """The memory floor: read the panoptic map once, write every target once."""
        pan.amax()
        for dtype, planes in shapes:
            torch.empty(len(scenes), planes, h, w, dtype=dtype).fill_(1)
    om_targets()
    cpu_targets()
    t_om, t_cpu = median_time(om_targets, repeat, warmup=False), median_time(cpu_targets, repeat, warmup=False)
    t_floor = median_time(floor, repeat)
    if only_om:
        print(f"{1e3 * t_om:.1f}")
        return
    print(f"3. targets, 4 crops of {h}x{w} ({sum(len(s) for _, _, s in scenes)} segments)")
    print(f"   OM (batch) {1e3 * t_om:.1f} ms   CPU generator (per image) {1e3 * t_cpu:.1f} ms   "
          f"ratio OM / CPU {t_om / t_cpu:.2f}")
    print(f"   memory floor (read the panoptic map once, write the targets once) {1e3 * t_floor:.1f} ms   "
          f"OM / floor {t_om / t_floor:.1f}")
    if compiled:
        fn = torch.compile(om_targets, fullgraph=True)  # one graph: OM.MAX_INSTANCES bounds the thing segments
        t0 = time.perf_counter()
        out = fn(pan)
        t_compile = time.perf_counter() - t0
        same = all(torch.equal(a, b) for a, b in zip(out, om_targets(pan)))
        t_compiled = median_time(lambda: fn(pan), repeat)
        print(f"   OM (batch) compiled with inductor (fullgraph, {t_compile:.0f} s to compile) "
              f"{1e3 * t_compiled:.1f} ms   compiled / eager {t_compiled / t_om:.2f}   identical targets: {same}")
    # this process keeps freed memory as training does (CPU_KEEP_FREED_MEMORY); glibc's default returns large freed
    # blocks to the system, so that every fresh OM tensor is page-faulted in again: measured in a child process
    child = subprocess.run([sys.executable, __file__, "--targets-only", "--default-allocator", "--repeat",
                            str(repeat), "--size", str(h), str(w)], capture_output=True, text=True, check=True)
    print(f"   OM (batch) with glibc's default allocator (CPU_KEEP_FREED_MEMORY False): {child.stdout.strip()} ms")


def bench_decoding(repeat, h, w):
    cfg = _cfg(["POST_PROCESSING.STUFF_AREA", "2048"])
    (_, ids, segs), = _scenes(1, h, w, 45, seed=2)
    gen = PanopticTargetGenerator(255, lambda x: x, META.thing_ids, sigma=8)
    t = gen(ids, segs)
    g = torch.Generator().manual_seed(0)
    sem = t["semantic"].clamp(max=6)
    logits = torch.randn(1, 7, h, w, generator=g) + 3 * torch.nn.functional.one_hot(sem, 7).permute(2, 0, 1)[None]
    spurious = 0.3 * torch.rand(1, h, w, generator=g) * (torch.rand(1, h, w, generator=g) > 0.99995)
    heat = (t["center"] + spurious)[None]
    off = t["offset"][None] + 0.5 * torch.randn(1, 2, h, w, generator=g)
    pp = cfg.POST_PROCESSING
    raw = {"semantic_pred": logits, "center_pred": heat, "offset_pred": off}

    def pure():
        return get_panoptic_segmentation(logits, heat, off, META.thing_ids, META.label_divisor, pp.STUFF_AREA,
                                         META.void_label, pp.CENTER_THRESHOLD, pp.NMS_KERNEL, pp.TOP_K_INSTANCE)

    def om():
        return compose("panoptic-deeplab")(raw, config=cfg, metadata=META).request("panoptic_pred")[0]
    pan, ctr = pure()
    assert torch.equal(om(), pan)
    t_pure, t_om = median_time(pure, repeat, warmup=False), median_time(om, repeat, warmup=False)
    print(f"4. decoding at {h}x{w}, {ctr.shape[1]} centres (identical panoptic maps)")
    print(f"   OM panoptic_pred {1e3 * t_om:.1f} ms   get_panoptic_segmentation {1e3 * t_pure:.1f} ms   "
          f"ratio {t_om / t_pure:.2f}")


def bench_learnable(repeat):
    from segmentation.data import build_dataset, collate
    from segmentation.model import build_model
    print("5. training step (forward + OM targets + losses + backward), MobileNetV2 config, 4 crops of 128x256")
    times = {}
    batch = None
    for mixins in ((), ("learnable-centers", "push-pull")):
        cfg = _cfg(["OM.MIXINS", str(tuple(mixins)), "OM.MAX_INSTANCES", "64"])
        torch.manual_seed(0)
        model = build_model(cfg)
        if batch is None:
            batch = collate([build_dataset(cfg, "train", is_train=True)[i] for i in range(4)])

        def step(model=model, batch=batch):
            om = model(batch["image"], batch)
            om.loss().backward()
            model.zero_grad(set_to_none=True)
        step()
        times[mixins] = median_time(step, repeat, warmup=False)
    plain, lc = times[()], times[("learnable-centers", "push-pull")]
    print(f"   plain OM {1e3 * plain:.0f} ms   learnable-centers + push-pull {1e3 * lc:.0f} ms   ratio "
          f"{lc / plain:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not for the record)")
    parser.add_argument("--compile", action="store_true", help="section 3 also times the targets compiled with "
                        "inductor (fullgraph; a C++ compiler and ~10 s to compile)")
    parser.add_argument("--targets-only", action="store_true", help=argparse.SUPPRESS)  # the child of section 3
    parser.add_argument("--size", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--default-allocator", action="store_true", help="do not keep freed memory (as "
                        "CPU_KEEP_FREED_MEMORY False)")
    args = parser.parse_args()
    if not args.default_allocator:
        keep_freed_memory()  # as the trainer does on CPU
    if args.targets_only:
        bench_targets(args.repeat, *args.size, only_om=True)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    t_hit, t_miss = bench_machinery(args.repeat)
    bench_calls(t_hit, t_miss)
    bench_targets(args.repeat, *((128, 256) if args.quick else (512, 1024)), compiled=args.compile)
    bench_decoding(args.repeat, *((256, 512) if args.quick else (1024, 2048)))
    bench_learnable(max(3, args.repeat // 2))


if __name__ == "__main__":
    main()
