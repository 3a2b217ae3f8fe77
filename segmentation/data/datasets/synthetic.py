"""A procedural synthetic panoptic dataset: the embedded default for demos and tests.

Scenes look like toy street views: sky, a wall, road and grass (stuff, each with its own texture), balls, crates and
cones (things, distinct shapes and colours, varied sizes, occluding each other), sometimes a crowd region (a cluster
of objects of one class annotated as one segment without instance), and void (an ego-vehicle band and specks).
Image ``i`` of a split depends only on ``(seed, split, i)``, so the dataset is deterministic and needs no files.
"""
import zlib

import cv2
import numpy as np

from ..metadata import DatasetMetadata
from .base import PanopticDataset, register_dataset

SYNTHETIC_METADATA = DatasetMetadata(
    name="synthetic_panoptic",
    class_names=("sky", "road", "grass", "wall", "ball", "crate", "cone"),
    thing_ids=(4, 5, 6),
    colors=((110, 160, 230), (100, 100, 100), (60, 150, 60), (170, 110, 70),
            (220, 40, 40), (240, 200, 40), (150, 40, 210)),
    label_divisor=1000,
    ignore_label=255,
)

SKY, ROAD, GRASS, WALL, BALL, CRATE, CONE = range(7)


def _texture(rng, h, w, kind):
    """Zero-mean texture [h, w] in grey levels, one kind per stuff class."""
    if kind == SKY:
        return np.linspace(-15, 15, h, dtype=np.float32)[:, None].repeat(w, 1)
    if kind == ROAD:
        return rng.normal(0, 6, (h, w)).astype(np.float32)
    if kind == GRASS:
        blades = rng.random((h, w)) < 0.15
        return np.where(blades, 35.0, -5.0).astype(np.float32)
    # wall: bricks, horizontal mortar lines every 6 px
    rows = (np.arange(h) % 6 == 0)[:, None].repeat(w, 1)
    return np.where(rows, -40.0, 5.0).astype(np.float32)


def _draw_shape(canvas, labels, cls, cy, cx, r, color, label):
    """Draw one object of class ``cls`` on the image and the label map (both in place)."""
    outline = tuple(int(c * 0.5) for c in color)
    if cls == BALL:
        cv2.circle(canvas, (cx, cy), r, color, -1)
        cv2.circle(canvas, (cx, cy), r, outline, 1)
        cv2.circle(labels, (cx, cy), r, label, -1)
    elif cls == CRATE:
        p0, p1 = (cx - r, cy - r), (cx + r, cy + r)
        cv2.rectangle(canvas, p0, p1, color, -1)
        cv2.rectangle(canvas, p0, p1, outline, 1)
        cv2.line(canvas, p0, p1, outline, 1)
        cv2.rectangle(labels, p0, p1, label, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(canvas, [pts], color)
        cv2.polylines(canvas, [pts], True, outline, 1)
        cv2.fillPoly(labels, [pts], label)


def render_scene(rng, height, width, max_objects=8, crowd_prob=0.3):
    """Draw one scene. Returns (image uint8 [H, W, 3] RGB, segment-id map int32 [H, W], segments list).

    Segment id 0 is void; ``segments`` lists ``{"id", "category_id", "iscrowd", "area"}`` for every id present.
    """
    meta = SYNTHETIC_METADATA
    h, w = height, width
    labels = np.zeros((h, w), np.int32)  # class-agnostic segment ids, 0 = void
    classes = {}  # segment id -> (train id, iscrowd)

    # stuff layout: sky above a horizon, an optional wall, road and grass split by a slanted border
    horizon = int(rng.uniform(0.25, 0.5) * h)
    yy, xx = np.mgrid[0:h, 0:w]
    stuff = np.full((h, w), SKY, np.int64)
    border = rng.uniform(0.2, 0.8) * w + rng.uniform(-1.0, 1.0) * (yy - horizon)
    road_left = rng.random() < 0.5
    ground = yy >= horizon
    stuff[ground & ((xx < border) == road_left)] = ROAD
    stuff[ground & ((xx < border) != road_left)] = GRASS
    if rng.random() < 0.7:
        x0, x1 = sorted(rng.integers(0, w, 2))
        top = int(rng.uniform(0.05, 0.6) * horizon)
        stuff[top:horizon, x0:x1 + 1] = WALL

    image = np.zeros((h, w, 3), np.float32)
    palette = np.asarray(meta.colors, np.float32)
    image[:] = palette[stuff]
    for cls in (SKY, ROAD, GRASS, WALL):
        mask = stuff == cls
        if mask.any():
            image[mask] += _texture(rng, h, w, cls)[mask, None]
    for seg_id, cls in enumerate((SKY, ROAD, GRASS, WALL), start=1):
        labels[stuff == cls] = seg_id
        classes[seg_id] = (cls, 0)
    next_id = 5

    canvas = np.clip(image, 0, 255).astype(np.uint8)
    min_r, max_r = max(3, h // 32), max(5, h // 5)

    # crowd: a cluster of small objects of one class, annotated as a single segment
    if rng.random() < crowd_prob:
        cls = int(rng.choice(meta.thing_ids))
        cy, cx = int(rng.uniform(horizon, h)), int(rng.uniform(0, w))
        for _ in range(int(rng.integers(4, 8))):
            oy, ox = rng.normal(0, max_r * 0.6, 2)
            _draw_shape(canvas, labels, cls, int(cy + oy), int(cx + ox), max(2, min_r), meta.colors[cls], next_id)
        classes[next_id] = (cls, 1)
        next_id += 1

    # things: drawn back to front (small y first), so nearer objects occlude farther ones
    n = int(rng.integers(2, max_objects + 1))
    ys = np.sort(rng.uniform(horizon - max_r, h, n))
    for cy in ys:
        cls = int(rng.choice(meta.thing_ids))
        r = int(rng.uniform(min_r, max_r) * (0.6 + 0.8 * (cy / h)))
        cx = int(rng.uniform(0, w))
        color = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in meta.colors[cls])
        _draw_shape(canvas, labels, cls, int(cy), cx, max(r, 2), color, next_id)
        classes[next_id] = (cls, 0)
        next_id += 1

    # void: an ego-vehicle band at the bottom and a few specks
    if rng.random() < 0.5:
        band = int(rng.uniform(0.04, 0.1) * h)
        canvas[h - band:] = rng.integers(0, 60, 3)
        labels[h - band:] = 0
    for _ in range(int(rng.integers(0, 4))):
        sy, sx = int(rng.integers(0, h - 3)), int(rng.integers(0, w - 3))
        canvas[sy:sy + 3, sx:sx + 3] = rng.integers(0, 256, 3)
        labels[sy:sy + 3, sx:sx + 3] = 0

    noisy = canvas.astype(np.float32) + rng.normal(0, 6, canvas.shape).astype(np.float32)
    image = np.clip(noisy, 0, 255).astype(np.uint8)

    areas = np.bincount(labels.ravel(), minlength=next_id)
    segments = [{"id": int(i), "category_id": int(c), "iscrowd": int(crowd), "area": int(areas[i])}
                for i, (c, crowd) in sorted(classes.items()) if areas[i] > 0]
    return image, labels, segments


@register_dataset("synthetic_panoptic")
class SyntheticPanoptic(PanopticDataset):
    """Procedurally generated panoptic scenes (see module docstring); configured by DATASET.SYNTHETIC.*."""

    metadata = SYNTHETIC_METADATA
    SPLITS = ("train", "val", "test")

    def __init__(self, split, image_size=(128, 256), num_images=100, scene_seed=0, max_objects=8, crowd_prob=0.3,
                 **kw):
        if split not in self.SPLITS:
            raise ValueError(f"Unknown split '{split}' for synthetic_panoptic; valid splits: {', '.join(self.SPLITS)}.")
        super().__init__(split=split, **kw)
        self.image_size = tuple(int(s) for s in image_size)
        self.num_images = int(num_images)
        self.scene_seed = int(scene_seed)
        self.max_objects = int(max_objects)
        self.crowd_prob = float(crowd_prob)

    @classmethod
    def from_config(cls, cfg, split, **kw):
        syn = cfg.DATASET.SYNTHETIC
        size = syn.TRAIN_SIZE if split == cfg.DATASET.TRAIN_SPLIT else syn.VAL_SIZE
        return cls(split, image_size=syn.IMAGE_SIZE, num_images=size, scene_seed=syn.SEED, max_objects=syn.MAX_OBJECTS,
                   crowd_prob=syn.CROWD_PROB, **kw)

    def __len__(self):
        return self.num_images

    def load(self, index):
        if not 0 <= index < self.num_images:
            raise IndexError(f"synthetic_panoptic[{self.split}] has {self.num_images} images; got index {index}.")
        rng = np.random.default_rng([self.scene_seed, zlib.crc32(self.split.encode()), index])
        image, pan, segments = render_scene(rng, *self.image_size, self.max_objects, self.crowd_prob)
        return {"image": image, "panoptic": pan, "segments": segments,
                "file_name": f"synthetic_{self.split}_{index:06d}"}
