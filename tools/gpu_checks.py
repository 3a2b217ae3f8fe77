"""The checks that need a CUDA device, as one prepared script: a session lent a GPU runs it once and records the
figures in docs/benchmarks.md; CI never depends on it.

    python tools/gpu_checks.py --out DIR [--device cuda] [--quick] [--only NAME ...] [--budget SECONDS]

Checks, in order of priority, each in its own subprocess with its own time limit (a check that fails or runs out of
time is recorded as such and the next one runs); every result is appended to DIR/gpu_checks.json as soon as it
ends, so a run cut short keeps what finished:

  om       the Panoptic-DeepLab OM's six targets for 4 crops of 1025x2049 under
           torch.cuda.set_sync_debug_mode("warn"): every host synchronisation they cause, with the line that caused
           it; their values against the same targets on the CPU (equal bit for bit); their time (median). Then the
           OM decoding (panoptic_pred) at 1024x2048: equal to the CPU's, its time.
  amp      the Quick-start config trained 20 iterations in float32 and with SOLVER.AMP.ENABLED (float16 and the
           grad scaler on CUDA): both finish, the losses are finite, and the step times.
  nccl     the Quick-start config through torchrun with one process: the NCCL process group, 5 iterations.
  table1   tools/benchmark.py, the paper's Table 1, at the paper's 1025x2049 crops (batch 4), one round, the four
           scenarios eager, then (i) and (iii) with MODEL.COMPILE (its JSON files beside gpu_checks.json).
  om_compiled  the OM's six targets and its decoding (as in om) each compiled in one graph with inductor (the
           decoding under compile is the static-shape one of the export): compile time, equal to eager bit for
           bit, time against eager (the targets on this CPU: 0.78-0.86x, tools/benchmark_om.py --compile).
  resume   the Quick-start config (constant learning rate, CUDNN.DETERMINISTIC) trained 12 iterations twice, and
           6 + 6 with TRAIN.RESUME: are the two uninterrupted runs equal (loss lines, final weights bit for bit),
           and the resumed one equal to them (the RNG states restored on the device)? Where the uninterrupted runs
           already differ (CUDA kernels that add with atomics, as bilinear upsampling's backward pass) it says so.

``--device cpu --quick`` runs the same code on the CPU at tiny sizes (a test does, so that the script does not rot;
there the synchronisation check has nothing to watch). ``--budget`` (default 540 s) bounds the whole run: a check
gets at most the time left.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_START = "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml"
TABLE1 = "configs/synthetic/table1_mbv2_os32.yaml"
STEP = re.compile(r"iter (\d+)/\d+ .*?loss ([-+0-9.eEnaif]+) .* step ([0-9.]+)s")
LOSS_LINE = re.compile(r"iter (\d+)/\d+  (.*?)  lr (\S+)")  # every loss and the learning rate, as logged
CHECKS = ("om", "amp", "nccl", "table1", "om_compiled", "resume")  # in order of priority
LIMITS = {"om": 150, "amp": 180, "nccl": 90, "table1": 420, "om_compiled": 200,
          "resume": 120}  # seconds each may take at most
OM_TARGETS = ("semantic_truth", "center_truth", "offset_truth", "semantic_weights_truth", "center_weights_truth",
              "offset_weights_truth")


def _timed(fn, device, repeat):
    """Median seconds of ``repeat`` calls of ``fn`` after one untimed call, each ending with the device
    synchronised (tools/_common.median_time)."""
    import torch
    from _common import median_time
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return median_time(lambda: (fn(), sync()), repeat)


def _om_targets(quick):
    """(config, OM class, panoptic maps [4, H, W] of 1025x2049 (65x129 quick), function of maps -> the six OM
    targets)."""
    import numpy as np
    import torch

    from segmentation.config import load_config
    from segmentation.data.datasets import SYNTHETIC_METADATA as META
    from segmentation.data.datasets import render_scene
    from segmentation.data.transforms import encode_panoptic
    from segmentation.model.output_math import compose

    cfg = load_config(os.path.join(ROOT, "configs/synthetic/om_panoptic_deeplab_mbv2_synthetic.yaml"),
                      ["POST_PROCESSING.STUFF_AREA", "2048", "OM.MAX_INSTANCES", "128"])
    cls = compose("panoptic-deeplab")
    h, w = (65, 129) if quick else (1025, 2049)
    rng = np.random.default_rng(0)
    pan = torch.stack([encode_panoptic(ids, segs, META)
                       for _, ids, segs in (render_scene(rng, h, w, max_objects=30, crowd_prob=0.2)
                                            for _ in range(4))])

    def targets(p):
        om = cls({"panoptic_truth": p}, config=cfg, metadata=META)
        return tuple(getattr(om, name)() for name in OM_TARGETS)
    return cfg, cls, pan, targets


def _om_decoding(quick, cfg, cls):
    """((logits, heatmap, offsets) of a rendered 1024x2048 scene (64x128 quick), function of them -> the OM's
    panoptic_pred)."""
    from benchmark_decoding import network_outputs  # tools/ is this script's folder, on sys.path

    from segmentation.data.datasets import SYNTHETIC_METADATA as META

    def decode(logits, heat, offsets):
        raw = {"semantic_pred": logits, "center_pred": heat, "offset_pred": offsets}
        return cls(raw, config=cfg, metadata=META).panoptic_pred()
    return network_outputs(*((64, 128) if quick else (1024, 2048)), META.num_classes, 80), decode


def check_om(device_name, quick):
    """The OM's targets and decoding on the device: synchronisations, equality with the CPU, time."""
    import torch

    device = torch.device(device_name)
    cfg, cls, pan, targets = _om_targets(quick)
    expected = targets(pan)
    on_device = pan.to(device)
    targets(on_device)  # lazy initialisation (kernels, tables) is not what the check looks for
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = targets(on_device)
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode(0)
    syncs = sorted({f"{os.path.relpath(w.filename, ROOT)}:{w.lineno}: {str(w.message).splitlines()[0]}"
                    for w in caught if "synchroniz" in str(w.message)})
    equal = {name: bool(torch.equal(a, b.cpu())) for name, a, b in zip(OM_TARGETS, expected, got)}
    seconds = _timed(lambda: targets(on_device), device, 10)

    (logits, heat, offsets), decode = _om_decoding(quick, cfg, cls)
    reference = decode(logits, heat, offsets)
    moved = [t.to(device) for t in (logits, heat, offsets)]
    decoded_equal = bool(torch.equal(decode(*moved).cpu(), reference))
    return {"targets_size": list(pan.shape), "targets_syncs": syncs, "targets_equal_cpu": equal,
            "targets_ms": round(1e3 * seconds, 2),
            "targets_cpu_ms": round(1e3 * _timed(lambda: targets(pan), torch.device("cpu"), 3), 2),
            "decoding_size": list(logits.shape[-2:]), "decoding_equal_cpu": decoded_equal,
            "decoding_ms": round(1e3 * _timed(lambda: decode(*moved), device, 5), 2),
            "ok": not syncs and all(equal.values()) and decoded_equal}


def _against_compiled(fn, args, device, backend):
    """``fn(*args)`` compiled in one graph with ``backend``: compile time, equality with eager, times."""
    import torch

    def as_tuple(x):
        return (x,) if torch.is_tensor(x) else tuple(x)
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    t0 = time.time()
    got = as_tuple(compiled(*args))
    if device.type == "cuda":
        torch.cuda.synchronize()
    compile_s = time.time() - t0
    equal = all(torch.equal(a, b) for a, b in zip(as_tuple(fn(*args)), got))
    eager_s, compiled_s = _timed(lambda: fn(*args), device, 10), _timed(lambda: compiled(*args), device, 10)
    return {"size": list(args[0].shape), "compile_s": round(compile_s, 1), "equal_eager": equal,
            "eager_ms": round(1e3 * eager_s, 2), "compiled_ms": round(1e3 * compiled_s, 2),
            "compiled_over_eager": round(compiled_s / eager_s, 3)}


def check_om_compiled(device_name, quick):
    """The OM's six targets, then its decoding (the static-shape one under compile), each compiled in one graph
    (inductor; the eager backend in the quick self-test): compile time, equality with eager on the device, time
    against eager."""
    import torch
    device = torch.device(device_name)
    cfg, cls, pan, targets = _om_targets(quick)
    inputs, decode = _om_decoding(quick, cfg, cls)
    backend = "eager" if quick else "inductor"
    result = {"targets": _against_compiled(targets, (pan.to(device),), device, backend),
              "decoding": _against_compiled(decode, tuple(t.to(device) for t in inputs), device, backend)}
    return {**result, "ok": all(part["equal_eager"] for part in result.values())}


def _train(out, device, quick, opts, torchrun=False):
    """Run tools/train_net.py on the Quick-start config; (return code, [(iteration, loss, step seconds)], tail)."""
    iterations = 4 if quick else 20
    command = ["tools/train_net.py", "--cfg", QUICK_START, "OUTPUT_DIR", out, "DEVICE", device,
               "TRAIN.MAX_ITER", str(iterations), "PRINT_FREQ", str(iterations // 2), "CKPT_FREQ", "0",
               "DEBUG.TENSORBOARD", "False", *opts]
    if torchrun:
        command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", *command]
    r = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True)
    log = os.path.join(out, "log.txt")
    text = open(log).read() if os.path.exists(log) else r.stdout + r.stderr
    steps = [(int(m.group(1)), float(m.group(2)), float(m.group(3))) for m in STEP.finditer(text)]
    return r.returncode, steps, (r.stdout + r.stderr)[-1500:]


def check_amp(device, quick, out):
    import math
    result = {}
    for name, opts in (("float32", []), ("amp", ["SOLVER.AMP.ENABLED", "True"])):
        rc, steps, tail = _train(os.path.join(out, f"amp_{name}"), device, quick, opts)
        result[name] = {"rc": rc, "losses": [s[1] for s in steps], "step_s": steps[-1][2] if steps else None}
        if rc:
            result[name]["tail"] = tail
    result["ok"] = all(result[k]["rc"] == 0 and result[k]["losses"] and all(math.isfinite(x) for x in
                                                                           result[k]["losses"])
                       for k in ("float32", "amp"))
    if result["ok"]:
        result["amp_speedup"] = round(result["float32"]["step_s"] / result["amp"]["step_s"], 2)
    return result


def check_nccl(device, quick, out):
    folder = os.path.join(out, "nccl")
    rc, steps, tail = _train(folder, device, quick, [], torchrun=True)
    log = os.path.join(folder, "log.txt")
    backend = re.search(r"backend (\w+)", open(log).read()) if os.path.exists(log) else None
    return {"rc": rc, "iterations": steps[-1][0] if steps else 0, "backend": backend.group(1) if backend else None,
            "ok": rc == 0 and bool(steps), **({"tail": tail} if rc else {})}


def check_resume(device, quick, out):
    n = 6 if quick else 12
    opts = ["TRAIN.MAX_ITER", str(n), "PRINT_FREQ", "1", "CUDNN.DETERMINISTIC", "True", "CUDNN.BENCHMARK", "False",
            "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.STEPS", "(100000,)", "SOLVER.WARMUP_ITERS", "0"]
    runs = [(os.path.join(out, "resume_full_1"), []), (os.path.join(out, "resume_full_2"), []),
            (os.path.join(out, "resume_cut"), ["TRAIN.MAX_ITER", str(n // 2)]),
            (os.path.join(out, "resume_cut"), ["TRAIN.RESUME", "True"])]
    for folder, extra in runs:
        rc, _, tail = _train(folder, device, quick, opts + extra)
        if rc:
            return {"ok": False, "rc": rc, "run": os.path.basename(folder), "tail": tail}
    losses = []
    for folder in dict.fromkeys(folder for folder, _ in runs):  # the cut run's log holds both of its halves
        with open(os.path.join(folder, "log.txt")) as f:
            losses.append({int(m.group(1)): (m.group(2), m.group(3)) for m in LOSS_LINE.finditer(f.read())})
    first, second, cut = losses
    later = [it for it in sorted(first) if it > n // 2]
    import torch
    weights = [torch.load(os.path.join(folder, "final_state.pth"), map_location="cpu", weights_only=True)["model"]
               for folder in dict.fromkeys(folder for folder, _ in runs)]

    def same_weights(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # equal loss lines (4 decimals) and the final weights equal bit for bit
    repeatable = first == second and same_weights(weights[0], weights[1])
    resumed = bool(later) and all(cut.get(it) == first[it] for it in later) and same_weights(weights[0], weights[2])
    verdict = ("exact" if resumed else "differs" if repeatable else
               "inconclusive: two uninterrupted runs already differ (non-deterministic kernels)")
    return {"ok": resumed or not repeatable, "verdict": verdict, "uninterrupted_runs_equal": repeatable,
            "resumed_equal": resumed, "compared_iterations": later,
            "lines": {it: [" ".join(first[it]), " ".join(cut.get(it, ("missing", "")))] for it in later}}


def check_table1(device, quick, out, limit):
    size = ["DATASET.SYNTHETIC.IMAGE_SIZE", "(64, 128)", "DATASET.CROP_SIZE", "(65, 129)", "TEST.CROP_SIZE",
            "(65, 129)"] if quick else \
        ["DATASET.SYNTHETIC.IMAGE_SIZE", "(1024, 2048)", "DATASET.CROP_SIZE", "(1025, 2049)", "TEST.CROP_SIZE",
         "(1025, 2049)", "DATALOADER.NUM_WORKERS", "8"]
    counts = ["--iters", "1", "--warmup", "0"] if quick else ["--iters", "3", "--warmup", "2"]
    if quick:  # the self-test traces the compiled scenarios without inductor's minutes of compilation
        size += ["MODEL.COMPILE_BACKEND", "eager"]
    result, t0 = {"ok": True}, time.time()
    for name, extra in (("eager", []), ("compiled", ["--compile", "--scenarios", "i,iii"])):
        path = os.path.join(out, f"table1_{name}.json")
        command = [sys.executable, "tools/benchmark.py", "--cfg", TABLE1, *counts, "--rounds", "1", "--json", path,
                   *extra, "DEVICE", device, *size]
        try:
            r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                               timeout=max(1, limit - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            result[name] = {"timed_out": True}
            result["ok"] = False
            break
        result[name] = {"rc": r.returncode, "table": r.stdout[-3000:]}
        result["ok"] = result["ok"] and r.returncode == 0
        if r.returncode:
            result[name]["tail"] = r.stderr[-1500:]
    return result


# check name -> its function of the parsed arguments (run in a child process)
RUNNERS = {"om": lambda a: check_om(a.device, a.quick), "amp": lambda a: check_amp(a.device, a.quick, a.out),
           "nccl": lambda a: check_nccl(a.device, a.quick, a.out),
           "resume": lambda a: check_resume(a.device, a.quick, a.out),
           "table1": lambda a: check_table1(a.device, a.quick, a.out, a.limit),
           "om_compiled": lambda a: check_om_compiled(a.device, a.quick)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder of gpu_checks.json and the runs' folders")
    parser.add_argument("--device", default="cuda", help="cuda (cpu: the quick self-test)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, not for the record)")
    parser.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS))
    parser.add_argument("--budget", type=float, default=540, help="seconds for all checks together")
    parser.add_argument("--check", choices=CHECKS, help=argparse.SUPPRESS)  # a child running one check
    parser.add_argument("--limit", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.check:  # a child: its result as one JSON line on stdout
        print("RESULT " + json.dumps(RUNNERS[args.check](args)))
        return 0
    import torch
    record_path = os.path.join(args.out, "gpu_checks.json")
    record = {"torch": torch.__version__, "device": args.device, "quick": args.quick,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "checks": {}}
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start, failed = time.time(), 0
    for name in args.only:
        left = args.budget - (time.time() - start)
        if left < 10:
            record["checks"][name] = {"ok": False, "skipped": "no time left in --budget"}
            failed += 1
            continue
        limit = min(LIMITS[name], left)
        t0 = time.time()
        command = [sys.executable, __file__, "--out", args.out, "--device", args.device, "--check", name,
                   "--limit", str(limit - 5)] + (["--quick"] if args.quick else [])
        try:
            r = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
            line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
            result = json.loads(line[len("RESULT "):]) if line else {"ok": False, "rc": r.returncode,
                                                                      "tail": (r.stdout + r.stderr)[-2000:]}
        except subprocess.TimeoutExpired:
            result = {"ok": False, "timed_out": limit}
        result["seconds"] = round(time.time() - t0, 1)
        record["checks"][name] = result
        failed += not result.get("ok")
        with open(record_path, "w") as f:
            json.dump(record, f, indent=1)
        print(f"{name}: {'ok' if result.get('ok') else 'FAILED'} ({result['seconds']} s)", flush=True)
    with open(record_path, "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
