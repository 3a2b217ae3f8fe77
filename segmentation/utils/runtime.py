"""Run-time helpers shared by training, evaluation and inference: the device, host memory, seeds and RNG states,
and the run folder (its file names and ``run.json``, the record of how a run ended)."""
import json
import logging
import os
import random
import time

import numpy as np
import torch

from ..config import dump_config
from . import comm
from .memory import keep_freed_memory

logger = logging.getLogger("segmentation")

CHECKPOINT_NAME = "checkpoint.pth.tar"  # the last (periodic or final) training state of OUTPUT_DIR
FINAL_NAME = "final_state.pth"  # the model after the last iteration, written once training finished
RUN_RECORD_NAME = "run.json"  # git revision, versions and how the run ended (status, iteration, reason)


def configure_backends(cfg):
    """CUDNN.BENCHMARK / DETERMINISTIC / ENABLED into torch.backends.cudnn (read by CUDA convolutions only)."""
    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK
    torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC
    torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED


def cgroup_cpu_limit(root="/sys/fs/cgroup"):
    """CPUs allowed by the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``), as a
    float; None without a quota."""
    candidates = [(os.path.join(root, "cpu.max"), None),
                  (os.path.join(root, "cpu", "cpu.cfs_quota_us"), os.path.join(root, "cpu", "cpu.cfs_period_us")),
                  (os.path.join(root, "cpu,cpuacct", "cpu.cfs_quota_us"),
                   os.path.join(root, "cpu,cpuacct", "cpu.cfs_period_us"))]
    for first, period_file in candidates:
        try:
            with open(first) as f:
                fields = f.read().split()
            if period_file is not None:
                with open(period_file) as f:
                    fields.append(f.read().strip())
        except OSError:
            continue
        quota, period = fields[0], fields[1] if len(fields) > 1 else "100000"
        if quota in ("max", "-1"):
            return None
        return max(int(quota) / int(period), 1.0)
    return None


def _affinity():
    """The set of CPUs this process may run on (all of the machine's where the platform has no affinity mask)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def available_cpus():
    """CPUs this process may use: its affinity mask, capped by the cgroup quota (not the machine's core count)."""
    cpus = len(_affinity())
    limit = cgroup_cpu_limit()
    return max(1, min(cpus, int(limit))) if limit is not None else cpus


def _cpu_times(cpus, stat_path):
    """{cpu: (busy, total)} jiffies of the given CPUs from a /proc/stat-format file (busy: all but idle and iowait;
    guest time is already inside user time)."""
    times = {}
    with open(stat_path) as f:
        for line in f:
            name, *fields = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
                continue
            values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
            times[int(name[3:])] = (sum(values) - values[3] - values[4], sum(values))
    return times


def busy_cpus_of_others(sample_seconds=0.3, stat_path="/proc/stat", cpus=None):
    """How many of this process's CPUs (its affinity) other processes keep busy: the busy share of each CPU over
    ``sample_seconds`` (from ``/proc/stat``), summed, minus this process's own CPU time meanwhile; 0.0 where the file
    cannot be read (not Linux)."""
    cpus = set(cpus if cpus is not None else _affinity())
    try:
        before, own = _cpu_times(cpus, stat_path), time.process_time()
        time.sleep(sample_seconds)
        after, own = _cpu_times(cpus, stat_path), time.process_time() - own
    except (OSError, ValueError):
        return 0.0
    busy = 0.0
    for cpu, (b1, t1) in after.items():
        b0, t0 = before.get(cpu, (b1, t1))
        busy += (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
    return max(0.0, busy - own / sample_seconds)


def choose_num_threads(cfg, local_processes=None, busy=None):
    """(intra-op threads, why): NUM_THREADS when positive; else OMP_NUM_THREADS when the environment sets it; else
    the CPUs this process may use (affinity and cgroup quota) that other processes leave idle, shared among the
    training processes of this machine (``local_processes``, default torchrun's LOCAL_WORLD_SIZE), at least 1.

    ``busy`` (default: measured now, ``busy_cpus_of_others``) is read only for a single process: beside its own
    starting siblings a process would count them as load. The loader workers are not subtracted: they sleep while
    their queue is full (one Quick-start worker used 7 % of a core); a full core each left half of a 2-CPU machine
    idle (docs/benchmarks.md, "Threads")."""
    if cfg.NUM_THREADS > 0:
        return cfg.NUM_THREADS, "NUM_THREADS"
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS of the environment"
    cpus = available_cpus()
    local = local_processes or int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if local > 1:
        return max(1, cpus // local), (f"automatic: {cpus} CPU(s) available / {local} local processes; "
                                       f"NUM_THREADS sets it")
    busy = busy_cpus_of_others() if busy is None else busy
    threads = max(1, min(cpus, int(len(_affinity()) - busy + 0.5)))
    return threads, (f"automatic: {cpus} CPU(s) available, {busy:.1f} kept busy by other processes; "
                     f"NUM_THREADS sets it")


def configure_threads(cfg, log=None):
    """Set torch's intra-op thread count (and OpenCV's) from ``choose_num_threads``, log the choice, return it."""
    import cv2
    threads, why = choose_num_threads(cfg)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    (log or logger).info("Using %d intra-op thread(s) (%s).", threads, why)
    return threads


def configure_runtime(cfg, device):
    """The process-wide settings of the config: threads (configure_threads), CUDNN.* (configure_backends) and, on
    CPU with CPU_KEEP_FREED_MEMORY, keeping freed host memory for reuse (``utils.memory.keep_freed_memory``)."""
    configure_threads(cfg)
    configure_backends(cfg)
    if device.type == "cpu" and cfg.CPU_KEEP_FREED_MEMORY:
        keep_freed_memory()


def resolve_device(cfg):
    if cfg.DEVICE == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.DEVICE == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE is 'cuda' but no CUDA device is available; set DEVICE auto or cpu.")
    if cfg.DEVICE not in ("cpu", "cuda"):
        raise ValueError(f"Unknown DEVICE '{cfg.DEVICE}'; valid: auto, cpu, cuda.")
    return torch.device(cfg.DEVICE)


def seed_everything(seed):
    if seed < 0:
        return
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states():
    """RNG states in types that ``torch.load(weights_only=True)`` accepts. On CUDA, the generator of this process's
    device (the one it trains on; every process of a run draws alike: same seed, same shapes), once CUDA is in use."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     cached), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_states(state):
    """Restore what ``rng_states`` returned; the CUDA state goes to this process's device, however many GPUs it
    sees (a cluster may set CUDA_VISIBLE_DEVICES per process). Checkpoints written before this stored the list of
    every device the saving process saw: the entry of its own device (0, the main process's) is restored."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, (list, tuple)):
        cuda = cuda[0] if cuda else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)


def save_run_record(cfg, output_dir, **fields):
    """The resolved config (plain YAML), the git revision, the package versions and ``fields`` (e.g. status)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "config.yaml"), "w") as f:
        f.write(dump_config(cfg))
    import importlib.metadata
    import platform
    import subprocess
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    packages = {}
    for name in ("torch", "numpy", "opencv-python-headless", "pillow", "yacs", "cityscapesscripts", "pycocotools"):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    record = {"git_revision": rev, "python": platform.python_version(), "packages": packages,
              "world_size": comm.get_world_size(), **fields}
    write_json_atomically(os.path.join(output_dir, RUN_RECORD_NAME), record)


def write_json_atomically(path, data):
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename: a reader never sees half a file
    (numpy scalars are written as floats)."""
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2, default=float)
    os.replace(path + ".tmp", path)


def update_run_record(output_dir, **fields):
    """Set ``fields`` in OUTPUT_DIR/run.json (e.g. ``status``, ``iteration``, ``reason``)."""
    path = os.path.join(output_dir, RUN_RECORD_NAME)
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = {}
    record.update(fields)
    write_json_atomically(path, record)


def read_run_record(folder):
    """OUTPUT_DIR/run.json of ``folder`` as a dict, or None when it is missing or unreadable."""
    try:
        with open(os.path.join(folder, RUN_RECORD_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def describe_run(record):
    """'<status> at iteration <i> of <n> (<reason>)' of a run record."""
    state = f"{record.get('status')} at iteration {record.get('iteration', '?')} of {record.get('max_iter', '?')}"
    return state + (f" ({record['reason']})" if record.get("reason") else "")
