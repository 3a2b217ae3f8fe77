"""Training speed on a shared machine: torch's default thread count against NUM_THREADS 0 (automatic).

    python tools/benchmark_threads.py [--steps 8] [--competitors 0 1 2] [--passive]

Runs the Quick-start training step (configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml) alone and beside 1 and 2
competing copies of itself (other jobs of the machine, with torch's defaults), once with torch's defaults (its thread
count, GNU OpenMP's default spin-wait) and once with the tools' choice (NUM_THREADS 0: automatic threads; the short
spin-wait of tools/_common.py), and prints the mean step time of the last PRINT_FREQ window (data
time excluded) of each, with the ratios measured in this one run. ``--passive`` adds torch's default threads with
OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep instead of spinning while they wait): if that alone recovers the
speed, spinning threads waiting for busy cores are the cost. Every process runs with OMP_NUM_THREADS unset.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml"
STEP = re.compile(r"iter (\d+)/\d+ .* step ([0-9.]+)s")


# torch's default behaviour: GNU OpenMP's default spin (the tools otherwise set a short one, see tools/_common.py)
TORCH_DEFAULT = {"GOMP_SPINCOUNT": "300000"}


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, **extra}


def _command(out, iterations, print_freq, threads):
    return [sys.executable, "tools/train_net.py", "--cfg", CFG, "OUTPUT_DIR", out, "TRAIN.MAX_ITER",
            str(iterations), "PRINT_FREQ", str(print_freq), "CKPT_FREQ", "0", "DEBUG.TENSORBOARD", "False",
            "NUM_THREADS", str(threads)]


def _competitors(count, folder):
    """Start ``count`` endless copies with torch's default threads; return them once each has logged a step."""
    procs = []
    for k in range(count):
        out = os.path.join(folder, f"competitor{k}")
        procs.append(subprocess.Popen(_command(out, 100000, 1, torch.get_num_threads()), cwd=ROOT,
                                      env=_env(**TORCH_DEFAULT),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
    deadline = time.time() + 600
    for k in range(count):
        log = os.path.join(folder, f"competitor{k}", "log.txt")
        while time.time() < deadline and not (os.path.exists(log) and STEP.search(open(log).read())):
            time.sleep(1)
    return procs


def _measure(folder, name, steps, threads, env):
    """Mean step seconds of the last window of ``steps`` iterations (windows of steps // 2)."""
    out = os.path.join(folder, name)
    r = subprocess.run(_command(out, steps, steps // 2, threads), cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=3600)
    if r.returncode:
        raise RuntimeError(f"{name} failed:\n{r.stderr[-2000:]}")
    windows = [float(m.group(2)) for m in STEP.finditer(r.stdout + open(os.path.join(out, "log.txt")).read())]
    chosen = re.search(r"Using (\d+) intra-op thread", open(os.path.join(out, "log.txt")).read())
    return windows[-1], int(chosen.group(1)) if chosen else threads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="training iterations per measurement (two windows)")
    parser.add_argument("--competitors", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--passive", action="store_true", help="also default threads with OMP_WAIT_POLICY=PASSIVE")
    parser.add_argument("--threads", type=int, default=0, help="NUM_THREADS of the tools' run (0: automatic)")
    args = parser.parse_args(argv)
    default = torch.get_num_threads()
    tools = "automatic" if not args.threads else f"NUM_THREADS {args.threads}"
    modes = [("default", default, _env(**TORCH_DEFAULT)), (tools, args.threads, _env())]
    if args.passive:
        modes.append(("default, passive wait", default, _env(OMP_WAIT_POLICY="PASSIVE")))
    print(f"torch {torch.__version__}, default {default} threads, {os.cpu_count()} CPUs; Quick-start step "
          f"(batch 8), mean of iterations {args.steps // 2 + 1}-{args.steps}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for count in args.competitors:
            procs = _competitors(count, folder)
            try:
                for name, threads, env in modes:
                    seconds, used = _measure(folder, f"{count}-{name.split(',')[0]}-{len(env)}", args.steps,
                                             threads, env)
                    results[count, name] = seconds
                    print(f"  {count} competitor(s)  {name:22s} {used} thread(s)  {seconds:.3f} s/step", flush=True)
            finally:
                for p in procs:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
    print(f"ratios (default / {tools}):")
    for count in args.competitors:
        line = f"  {count} competitor(s): {results[count, 'default'] / results[count, tools]:.2f}x"
        if args.passive:
            line += f"   (default / passive wait: {results[count, 'default'] / results[count, modes[2][0]]:.2f}x)"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
