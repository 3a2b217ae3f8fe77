"""Data loaders for training (infinite, shuffled) and evaluation (sequential, batch 1)."""
import itertools

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from .datasets import DATASET_REGISTRY, build_dataset, collate
from .datasets.base import configured_metadata


def get_metadata(cfg):
    """The DatasetMetadata of DATASET.DATASET, with DATASET.LABEL_DIVISOR applied (no file is read)."""
    from .datasets import cityscapes, coco_format, synthetic  # noqa: F401  (registration)
    return configured_metadata(DATASET_REGISTRY.get(cfg.DATASET.DATASET).metadata_from_config(cfg), cfg)


class TrainingSampler(Sampler):
    """Infinite stream of indices, reshuffled every pass from one seed (shared by all processes), sharded by rank."""

    def __init__(self, size, shuffle=True, seed=0, rank=0, world_size=1):
        if size <= 0:
            raise ValueError("The training dataset is empty.")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size

    def _infinite(self):
        g = torch.Generator()
        g.manual_seed(self.seed)
        while True:
            yield from (torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)).tolist()

    def __iter__(self):
        return itertools.islice(self._infinite(), self.rank, None, self.world_size)


def _worker_init(worker_id):
    import cv2
    cv2.setNumThreads(0)  # avoid oversubscribing the cores with OpenCV threads inside workers
    np.random.seed((torch.initial_seed() + worker_id) % 2 ** 32)


def build_train_loader(cfg, rank=0, world_size=1):
    from .check import require_valid_dataset
    dataset = build_dataset(cfg, cfg.DATASET.TRAIN_SPLIT, is_train=True)
    require_valid_dataset(dataset)
    if cfg.TRAIN.IMS_PER_BATCH % world_size:
        raise ValueError(f"TRAIN.IMS_PER_BATCH ({cfg.TRAIN.IMS_PER_BATCH}) is the global batch and must be divisible "
                         f"by the number of processes ({world_size}).")
    sampler = TrainingSampler(len(dataset), cfg.DATALOADER.TRAIN_SHUFFLE, seed=max(cfg.SEED, 0), rank=rank,
                              world_size=world_size)
    return DataLoader(dataset, batch_size=cfg.TRAIN.IMS_PER_BATCH // world_size, sampler=sampler,
                      num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=collate, worker_init_fn=_worker_init,
                      drop_last=True, persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0)


def build_test_loader(cfg):
    dataset = build_dataset(cfg, cfg.DATASET.TEST_SPLIT, is_train=False)
    return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=min(cfg.DATALOADER.NUM_WORKERS, 1),
                      collate_fn=collate, worker_init_fn=_worker_init)
