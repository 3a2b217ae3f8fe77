"""Class metadata of a panoptic dataset: the one place that knows names, thing ids, colours and id encodings."""
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class DatasetMetadata:
    """Everything the model, the evaluator and the visualizer need to know about a dataset's classes.

    Class ids are contiguous *train ids* ``0 .. num_classes - 1``. A panoptic map in the train-id encoding holds
    ``semantic * label_divisor + instance`` for thing instances (instance >= 1), ``semantic * label_divisor`` for
    stuff and crowd regions, and ``ignore_label * label_divisor`` for void.
    """

    name: str
    class_names: tuple[str, ...]
    thing_ids: tuple[int, ...]
    colors: tuple[tuple[int, int, int], ...]
    label_divisor: int = 1000
    ignore_label: int = 255
    eval_ids: tuple[int, ...] = field(default=())  # train id -> id used by the official evaluator (default: same)

    def __post_init__(self):
        n = len(self.class_names)
        if len(self.colors) != n:
            raise ValueError(f"{self.name}: {len(self.colors)} colours for {n} classes.")
        bad = [t for t in self.thing_ids if not 0 <= t < n]
        if bad:
            raise ValueError(f"{self.name}: thing ids {bad} are outside 0..{n - 1}.")
        if self.eval_ids and len(self.eval_ids) != n:
            raise ValueError(f"{self.name}: {len(self.eval_ids)} eval ids for {n} classes.")
        if self.ignore_label < n:
            raise ValueError(f"{self.name}: ignore label {self.ignore_label} collides with a class id.")

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def stuff_ids(self):
        return tuple(i for i in range(self.num_classes) if i not in self.thing_ids)

    @property
    def void_label(self):
        """Panoptic id of void pixels in the train-id encoding."""
        return self.ignore_label * self.label_divisor

    def is_thing_table(self, device=None):
        """Bool tensor [ignore_label + 1]: entry c is True iff train id c is a thing class (ignore is False)."""
        table = torch.zeros(self.ignore_label + 1, dtype=torch.bool, device=device)
        table[list(self.thing_ids)] = True
        return table

    def palette(self):
        """uint8 array [256, 3]: colour of each train id, black for ignore and unused ids."""
        pal = np.zeros((256, 3), np.uint8)
        pal[: self.num_classes] = np.asarray(self.colors, np.uint8)
        return pal
