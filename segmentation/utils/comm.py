"""Process-group helpers: single-process by default, torchrun's environment when present."""
import datetime
import os

import torch
import torch.distributed as dist


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_world_size():
    return dist.get_world_size() if is_distributed() else 1


def get_rank():
    return dist.get_rank() if is_distributed() else 0


def is_main_process():
    return get_rank() == 0


def init_distributed(device_type, timeout_minutes=None):
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); NCCL for CUDA,
    gloo for CPU. Without those variables it does nothing: plain ``python tools/train_net.py`` is one process;
    with them it joins even as the only process (``torchrun --nproc_per_node 1`` runs the code path of N processes:
    the process group, DDP). ``timeout_minutes`` (DIST_TIMEOUT): how long a collective may wait; None: torch's
    default (10 minutes for NCCL, 30 for gloo).

    Returns (rank, world size, local rank).
    """
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return 0, 1, 0
    if not is_distributed():
        timeout = {} if timeout_minutes is None else {"timeout": datetime.timedelta(minutes=timeout_minutes)}
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", **timeout)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), dist.get_world_size(), local_rank


def shutdown():
    """Leave the process group in order at the end of a run: every process waits until all got here, then the group
    is destroyed, so that none exits while another still talks to it (a gloo process that outlived its peers could
    abort at exit: "terminate called without an active exception"; NCCL warns about a group not destroyed)."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(array):
    """Sum a numpy array (or tensor) over all processes, in place for arrays; returns the summed value."""
    if not is_distributed():
        return array
    tensor = torch.as_tensor(array).clone()
    dist.all_reduce(tensor)
    if hasattr(array, "shape") and not isinstance(array, torch.Tensor):
        array[...] = tensor.numpy()
        return array
    return tensor


def barrier():
    if is_distributed():
        dist.barrier()


def all_gather_object(obj):
    """List of ``obj`` from every process, in rank order (``[obj]`` without distribution)."""
    if not is_distributed():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_object(obj):
    """List of ``obj`` from every process, in rank order, on the main process; None on the others (``[obj]``
    without distribution)."""
    if not is_distributed():
        return [obj]
    out = [None] * get_world_size() if is_main_process() else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj):
    """The main process's ``obj`` on every process (``obj`` itself without distribution)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
