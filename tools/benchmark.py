"""The ModulOM paper's Table 1: training-step cost of the four integration scenarios on one model and dataset.

    python tools/benchmark.py --cfg FILE --iters N [--warmup W] [--json OUT] [KEY VALUE ...]

Scenarios (each run in its own process, so that peak memory is its own):
  (i)   conventional: CPU targets in the data-loader workers, losses in the model;
  (ii)  OM with the 'cpu-tensors' mixin: the OM reads the workers' targets (shallow integration);
  (iii) OM with targets computed in the OM (DATASET.PAN_ONLY);
  (iv)  (iii) + 'learnable-centers'.
Per scenario: forward (data ready -> loss computed, OM targets included), backward (backward + optimizer step) and
overall batch time (iteration end to iteration end, data waiting included), mean ± std over N iterations after W
warm-up ones, with device synchronisation on CUDA; peak memory: CUDA max allocated, else the process's peak RSS.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SCENARIOS = {
    "i": ("Original Panoptic-DeepLab", ["OM.NAME", "", "DATASET.PAN_ONLY", "False"]),
    "ii": ("w/ ModulOM (cpu-tensors)", ["OM.NAME", "panoptic-deeplab", "OM.MIXINS", "('cpu-tensors',)",
                                        "DATASET.PAN_ONLY", "False"]),
    "iii": ("w/ ModulOM, targets in OM", ["OM.NAME", "panoptic-deeplab", "OM.MIXINS", "()", "DATASET.PAN_ONLY",
                                          "True"]),
    "iv": ("w/ ModulOM, targets in OM, learnable centers", ["OM.NAME", "panoptic-deeplab", "OM.MIXINS",
                                                            "('learnable-centers',)", "DATASET.PAN_ONLY", "True"]),
}


def run_scenario(cfg, iters, warmup):
    """Measure one scenario in this process; returns a dict of lists of seconds and the peak memory in GB."""
    import torch

    from segmentation.data import build_train_loader
    from segmentation.engine.trainer import logged_losses, resolve_device, seed_everything, to_device
    from segmentation.model import build_model
    from segmentation.solver import build_optimizer

    seed_everything(cfg.SEED)
    device = resolve_device(cfg)
    model = build_model(cfg).to(device).train()
    optimizer = build_optimizer(cfg, model)
    loader = iter(build_train_loader(cfg))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    times = {"forward": [], "backward": [], "batch": []}
    sync()
    last_end = time.perf_counter()
    for it in range(warmup + iters):
        if it == warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        batch = to_device(next(loader), device)
        sync()
        t0 = time.perf_counter()
        loss = logged_losses(model(batch["image"], batch))["loss"]
        sync()
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        t2 = time.perf_counter()
        if it >= warmup:
            times["forward"].append(t1 - t0)
            times["backward"].append(t2 - t1)
            times["batch"].append(t2 - last_end)
        last_end = t2
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # kB -> GB on Linux
    return {"times": times, "peak_memory_gb": peak, "device": str(device)}


def _mean_std(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_table(results):
    rows = ["| Experiment | Forward pass (s) | Backward pass (s) | Overall batch time (s) | Peak memory (GB) |",
            "|---|---|---|---|---|"]
    for key, r in results.items():
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in (_mean_std(r["times"][k]) for k in ("forward", "backward", "batch"))]
        rows.append(f"| ({key}) {SCENARIOS[key][0]} | {' | '.join(cells)} | {r['peak_memory_gb']:.3f} |")
    base = results.get("i")
    if base:
        rows += ["", "| Ratio to (i) | Forward | Backward | Overall batch | Peak memory |", "|---|---|---|---|---|"]
        for key, r in results.items():
            ratios = [statistics.mean(r["times"][k]) / statistics.mean(base["times"][k])
                      for k in ("forward", "backward", "batch")]
            ratios.append(r["peak_memory_gb"] / base["peak_memory_gb"])
            rows.append(f"| ({key}) | " + " | ".join(f"{x:.2f}" for x in ratios) + " |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Reproduce the ModulOM paper's Table 1.")
    parser.add_argument("--cfg", "--config-file", dest="cfg", required=True)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the measurements to this file")
    parser.add_argument("--scenario", choices=list(SCENARIOS), default=None, help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.scenario:  # child process: measure one scenario, print JSON
        from segmentation.config import load_config
        cfg = load_config(args.cfg, list(args.opts) + SCENARIOS[args.scenario][1])
        print("RESULT " + json.dumps(run_scenario(cfg, args.iters, args.warmup)))
        return 0
    results = {}
    for key in SCENARIOS:
        cmd = [sys.executable, os.path.abspath(__file__), "--cfg", args.cfg, "--iters", str(args.iters), "--warmup",
               str(args.warmup), "--scenario", key, *args.opts]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"scenario ({key}) failed")
        results[key] = json.loads(line[len("RESULT "):])
        print(f"({key}) done: {statistics.mean(results[key]['times']['batch']):.3f} s per batch", flush=True)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
