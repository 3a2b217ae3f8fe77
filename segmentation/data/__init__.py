"""Datasets, transforms, target generation and loaders."""
from .build import TrainingSampler, build_test_loader, build_train_loader, get_metadata
from .datasets import DATASET_REGISTRY, build_dataset, collate
from .metadata import DatasetMetadata

__all__ = ["DATASET_REGISTRY", "DatasetMetadata", "TrainingSampler", "build_dataset", "build_test_loader",
           "build_train_loader", "collate", "get_metadata"]
