"""Data loaders for training (infinite, shuffled) and evaluation (sequential, batch 1)."""
import atexit
import itertools
import multiprocessing
import multiprocessing.util  # registers its exit function first, so ours (below) runs before it
import os
import signal

import torch
from torch.utils.data import DataLoader, Sampler

from .datasets import DATASET_REGISTRY, build_dataset, collate
from .datasets.base import configured_metadata


def get_metadata(cfg):
    """The DatasetMetadata of DATASET.DATASET with DATASET.LABEL_DIVISOR applied; no image is read (JSON-defined
    datasets read their categories from the annotation file)."""
    from .datasets import cityscapes, coco_format, synthetic  # noqa: F401  (registration)
    return configured_metadata(DATASET_REGISTRY.get(cfg.DATASET.DATASET).metadata_from_config(cfg), cfg)


class TrainingSampler(Sampler):
    """Infinite stream of (index, position) pairs, reshuffled every pass from one seed shared by all processes,
    sharded by rank. ``position`` is the sample's place in the global stream: the dataset keys its augmentation
    randomness on it, so a run resumed at ``start`` sees exactly the samples and augmentations of an uninterrupted
    run, whatever the number of workers."""

    def __init__(self, size, shuffle=True, seed=0, rank=0, world_size=1, start=0):
        if size <= 0:
            raise ValueError("The training dataset is empty.")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.start = rank, world_size, start

    def _infinite(self):
        g = torch.Generator()
        g.manual_seed(self.seed)
        position = 0
        while True:
            order = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
            for index in order.tolist():
                yield index, position
                position += 1

    def __iter__(self):
        first = self.start * self.world_size + self.rank  # ``start`` counts this process's samples
        return itertools.islice(self._infinite(), first, None, self.world_size)


def _worker_init(worker_id):
    import cv2
    cv2.setNumThreads(0)  # avoid oversubscribing the cores with OpenCV threads inside workers
    # SIGINT/SIGTERM sent to the whole process group (Ctrl-C, `timeout`, SLURM, Kubernetes) are the main process's
    # to handle: it finishes the step, saves and shuts the workers down. A worker dying of the signal would make
    # the main process raise before it could save.
    # The price: a worker no longer ends on SIGTERM, see _kill_loader_workers_at_exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _kill_loader_workers_at_exit():
    """At interpreter exit, multiprocessing ends its daemonic children (the loader workers) with SIGTERM and joins
    them; torch leaves a loader iterator still alive then (held by a traceback or a reference cycle) to that
    mechanism. The workers ignore SIGTERM (see _worker_init), so the join would wait forever: end them with SIGKILL,
    which is what multiprocessing intends for daemonic children anyway (torch's SIGCHLD handler, which would report
    the kill as a worker failure, is removed first). Registered after multiprocessing's own exit function, so it
    runs before it (atexit is last in, first out)."""
    workers = [child for child in multiprocessing.active_children() if child.daemon]
    if workers:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for child in workers:
            child.kill()


atexit.register(_kill_loader_workers_at_exit)


def _loader(dataset, **kwargs):
    """A DataLoader with this project's worker setup (signals, OpenCV threads)."""
    return DataLoader(dataset, collate_fn=collate, worker_init_fn=_worker_init, **kwargs)


def build_train_loader(cfg, rank=0, world_size=1, start=0):
    """Infinite training loader of this process; ``start`` samples of its stream are skipped (resume)."""
    from .check import require_valid_dataset
    dataset = build_dataset(cfg, cfg.DATASET.TRAIN_SPLIT, is_train=True)
    # the trainer writes the resolved config there before building the loader: the command names a real file
    require_valid_dataset(dataset, config_path=os.path.join(cfg.OUTPUT_DIR, "config.yaml"))
    per_step = world_size * cfg.TRAIN.ACCUMULATE_STEPS
    if cfg.TRAIN.IMS_PER_BATCH % per_step:
        raise ValueError(f"TRAIN.IMS_PER_BATCH ({cfg.TRAIN.IMS_PER_BATCH}) is the global batch and must be divisible "
                         f"by processes x TRAIN.ACCUMULATE_STEPS ({per_step}).")
    sampler = TrainingSampler(len(dataset), cfg.DATALOADER.TRAIN_SHUFFLE, seed=max(cfg.SEED, 0), rank=rank,
                              world_size=world_size, start=start)
    # its own generator: creating the iterator must not consume the global torch RNG (exact resume)
    generator = torch.Generator().manual_seed(max(cfg.SEED, 0) + rank)
    return _loader(dataset, batch_size=cfg.TRAIN.IMS_PER_BATCH // per_step, sampler=sampler,
                   num_workers=cfg.DATALOADER.NUM_WORKERS, drop_last=True,
                   persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0, generator=generator)


def build_test_loader(cfg, rank=0, world_size=1):
    """Batch-1 loader over the test split; with several processes, this process's shard (images rank::world)."""
    dataset = build_dataset(cfg, cfg.DATASET.TEST_SPLIT, is_train=False)
    total = len(dataset) if cfg.TEST.MAX_IMAGES < 0 else min(len(dataset), cfg.TEST.MAX_IMAGES)
    return _loader(dataset, batch_size=1, sampler=list(range(rank, total, world_size)),
                   num_workers=min(cfg.DATALOADER.NUM_WORKERS, 1))
