"""The ModulOM paper's Table 1: training-step cost of the four integration scenarios on one model and dataset.

    python tools/benchmark.py --cfg FILE [--iters N] [--warmup W] [--rounds R] [--compile] [--json OUT]
                              [KEY VALUE ...]

Scenarios:
  (i)   conventional: CPU targets in the data-loader workers, losses in the model;
  (ii)  OM with the 'cpu-tensors' mixin: the OM reads the workers' targets (shallow integration);
  (iii) OM with targets computed in the OM (DATASET.PAN_ONLY);
  (iv)  (iii) + 'learnable-centers'.

Method: R rounds; in each, every scenario runs in its own process (so that peak memory is its own), in an order
rotated from round to round, for N iterations after W warm-up ones, with the trainer's runtime settings (threads,
allocator: CPU_KEEP_FREED_MEMORY). Per scenario: forward (data ready -> loss computed, OM targets included),
backward (backward + optimizer step) and overall batch time (iteration end to iteration end, data waiting
included), as medians over all rounds' iterations; the ratio to (i) is taken within each round (a slow moment of a
shared machine hits the scenarios of one round alike) and reported as the median over rounds with its range. Peak
memory: on CUDA the maximum allocated; on CPU the peak of the process's and its loader workers' proportional set
size together (PSS: pages shared with the workers after fork counted once), sampled every 50 ms.

``--compile`` also runs every scenario with MODEL.COMPILE True in each round (the warm-up iterations absorb the
compilation) and adds its batch time and its ratio to the eager one (within each round) as columns.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
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
PARTS = ("forward", "backward", "batch")
COMPILED = "+compile"  # suffix of a scenario run with MODEL.COMPILE True


def _pss_kb(pid):
    """Proportional set size of a process in kB (0 if it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
    except OSError:
        return 0


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class PeakMemory:
    """Samples the PSS of this process and its children (the loader workers) every ``period`` seconds; ``peak_gb``
    is the largest sum seen (0 where /proc is not available)."""

    def __init__(self, period=0.05):
        self.period, self.peak_kb, self._stop = period, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = os.getpid()
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _pss_kb(me) + sum(_pss_kb(c) for c in _children(me)))
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak_gb(self):
        return self.peak_kb / 2 ** 20


def run_scenario(cfg, iters, warmup):
    """Measure one scenario in this process; returns a dict of lists of seconds and the peak memory in GB."""
    import torch

    from segmentation.data import build_train_loader
    from segmentation.engine.trainer import logged_losses, resolve_device, seed_everything, to_device
    from segmentation.model import build_model, compile_network
    from segmentation.solver import build_optimizer
    from segmentation.utils.runtime import configure_runtime

    device = resolve_device(cfg)
    configure_runtime(cfg, device)  # the trainer's threads and allocator
    seed_everything(cfg.SEED)
    model = compile_network(cfg, build_model(cfg).to(device).train())  # MODEL.COMPILE, as the trainer
    optimizer = build_optimizer(cfg, model)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    times = {part: [] for part in PARTS}
    with PeakMemory() as memory:
        loader = iter(build_train_loader(cfg))
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
        del loader
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else memory.peak_gb
    compiled = hasattr(getattr(model, "net", model), "_eager_forward")
    return {"times": times, "peak_memory_gb": peak, "device": str(device), "compiled": compiled}


def summarize(rounds):
    """``rounds``: list of {scenario: result}. Returns {scenario: {part: median s, ratio: {part: (median, low, high)},
    peak_memory_gb, memory_ratio}} with the ratios to (i) taken within each round."""
    out = {}
    for key in SCENARIOS:
        runs = [r[key] for r in rounds if key in r]
        if not runs:
            continue
        entry = {part: statistics.median([t for run in runs for t in run["times"][part]]) for part in PARTS}
        entry["peak_memory_gb"] = max(run["peak_memory_gb"] for run in runs)
        ratios = {part: sorted(statistics.median(r[key]["times"][part]) / statistics.median(r["i"]["times"][part])
                               for r in rounds if key in r and "i" in r) for part in PARTS}
        entry["ratio"] = {part: (statistics.median(v), v[0], v[-1]) for part, v in ratios.items() if v}
        memory = [r[key]["peak_memory_gb"] / r["i"]["peak_memory_gb"] for r in rounds if key in r and "i" in r]
        entry["memory_ratio"] = statistics.median(memory) if memory else None
        compiled = [r for r in rounds if key + COMPILED in r]
        if compiled:
            times = [t for r in compiled for t in r[key + COMPILED]["times"]["batch"]]
            entry["compiled_batch"] = statistics.median(times)
            speed = sorted(statistics.median(r[key + COMPILED]["times"]["batch"]) /
                           statistics.median(r[key]["times"]["batch"]) for r in compiled)
            entry["compiled_ratio"] = (statistics.median(speed), speed[0], speed[-1])
        out[key] = entry
    return out


def format_table(summary, n_rounds):
    compiled = all("compiled_batch" in s for s in summary.values())
    extra = " Compiled batch time (s) | Compiled / eager batch |" if compiled else ""
    rows = [f"| Experiment | Forward pass (s) | Backward pass (s) | Overall batch time (s) | Peak memory (GB) |{extra}",
            "|---|---|---|---|---|" + ("---|---|" if compiled else "")]
    for key, s in summary.items():
        cells = (f" {s['compiled_batch']:.3f} | {s['compiled_ratio'][0]:.2f} ({s['compiled_ratio'][1]:.2f}-"
                 f"{s['compiled_ratio'][2]:.2f}) |" if compiled else "")
        rows.append(f"| ({key}) {SCENARIOS[key][0]} | " + " | ".join(f"{s[p]:.3f}" for p in PARTS)
                    + f" | {s['peak_memory_gb']:.3f} |{cells}")
    rows += ["", f"| Ratio to (i), median (range) over {n_rounds} round(s) | Forward | Backward | Overall batch | "
             f"Peak memory |", "|---|---|---|---|---|"]
    for key, s in summary.items():
        if s["memory_ratio"] is None:  # (i) was not run
            continue
        cells = [f"{m:.2f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in (s["ratio"][p] for p in PARTS)]
        rows.append(f"| ({key}) | " + " | ".join(cells) + f" | {s['memory_ratio']:.2f} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Reproduce the ModulOM paper's Table 1.")
    parser.add_argument("--cfg", "--config-file", dest="cfg", required=True)
    parser.add_argument("--iters", type=int, default=5, help="measured iterations per scenario and round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="every scenario once per round, order rotated")
    parser.add_argument("--compile", action="store_true", help="also run every scenario with MODEL.COMPILE True")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), metavar="i,ii,...",
                        help="comma-separated scenarios to run (default: all; (i) is the reference of the ratios)")
    parser.add_argument("--json", default=None, help="write the measurements to this file")
    parser.add_argument("--scenario", default=None, help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.scenario:  # child process: measure one scenario, print JSON
        from segmentation.config import load_config
        key = args.scenario.removesuffix(COMPILED)
        compiled = ["MODEL.COMPILE", "True"] if args.scenario.endswith(COMPILED) else []
        cfg = load_config(args.cfg, list(args.opts) + SCENARIOS[key][1] + compiled)
        print("RESULT " + json.dumps(run_scenario(cfg, args.iters, args.warmup)))
        return 0
    chosen = args.scenarios.split(",")
    if set(chosen) - set(SCENARIOS):
        parser.error(f"--scenarios: unknown {', '.join(sorted(set(chosen) - set(SCENARIOS)))}; choose among "
                     f"{', '.join(SCENARIOS)}")
    keys = [k for key in chosen for k in ((key, key + COMPILED) if args.compile else (key,))]
    rounds = []
    for n in range(args.rounds):
        order = keys[n % len(keys):] + keys[:n % len(keys)]
        results = {}
        for key in order:
            cmd = [sys.executable, os.path.abspath(__file__), "--cfg", args.cfg, "--iters", str(args.iters),
                   "--warmup", str(args.warmup), "--scenario", key, *args.opts]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                raise SystemExit(f"scenario ({key}) failed")
            results[key] = json.loads(line[len("RESULT "):])
            print(f"round {n + 1}/{args.rounds} ({key}): {statistics.median(results[key]['times']['batch']):.3f} s "
                  f"per batch", flush=True)
        rounds.append(results)
    print(format_table(summarize(rounds), args.rounds))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": rounds, "summary": summarize(rounds)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
