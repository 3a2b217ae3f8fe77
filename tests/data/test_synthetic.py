import numpy as np
import pytest
import torch

from segmentation.data import build_dataset, build_train_loader
from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.data.datasets import DatasetError, SyntheticPanoptic, read_image
from segmentation.data.datasets.base import require_dir
from tests.fixtures.images import save_turned


def test_deterministic_and_splits_differ():
    a, b = SyntheticPanoptic("val", num_images=3), SyntheticPanoptic("val", num_images=3)
    for i in range(3):
        assert np.array_equal(a.load(i)["image"], b.load(i)["image"])
    t = SyntheticPanoptic("train", num_images=3)
    assert not np.array_equal(a.load(0)["image"], t.load(0)["image"])


def test_scenes_hold_stuff_things_crowd_and_void():
    ds = SyntheticPanoptic("train", image_size=(96, 160), num_images=40, crowd_prob=0.5)
    classes, crowd, void = set(), 0, 0
    for i in range(40):
        s = ds.load(i)
        ids = set(np.unique(s["panoptic"]).tolist())
        assert {seg["id"] for seg in s["segments"]} == ids - {0}  # every listed segment is present and vice versa
        for seg in s["segments"]:
            classes.add(seg["category_id"])
            crowd += seg["iscrowd"]
            assert not seg["iscrowd"] or seg["category_id"] in META.thing_ids
            assert seg["area"] == int((s["panoptic"] == seg["id"]).sum())
        void += 0 in ids
    assert classes == set(range(META.num_classes))
    assert crowd > 5 and void > 5


def test_getitem_outputs_and_pan_only(synthetic_cfg):
    ds = build_dataset(synthetic_cfg, "train", is_train=True)
    s = ds[0]
    assert s["image"].shape == (3, 64, 96) and s["panoptic"].shape == (64, 96)
    assert s["center"].shape == (1, 64, 96) and s["offset"].shape == (2, 64, 96)
    sem = s["panoptic"] // META.label_divisor
    assert torch.equal(sem, s["semantic"])  # the encoding and the CPU targets agree
    synthetic_cfg.DATASET.PAN_ONLY = True
    s = build_dataset(synthetic_cfg, "train", is_train=True)[0]
    assert set(s) == {"image", "panoptic", "file_name", "crowd_table"}  # no dense target, a per-image id table
    assert s["crowd_table"].shape == (7 * META.label_divisor + 1,) and s["crowd_table"].dtype == torch.bool


def test_label_divisor_from_the_config(synthetic_cfg):
    from segmentation.data import get_metadata
    synthetic_cfg.DATASET.LABEL_DIVISOR = 256
    ds = build_dataset(synthetic_cfg, "val", is_train=False)
    pan = ds[0]["panoptic"]
    assert ds.metadata.label_divisor == 256 == get_metadata(synthetic_cfg).label_divisor
    assert set((pan // 256).unique().tolist()) <= set(range(7)) | {255}  # classes and void, nothing else


def test_train_loader_batches(synthetic_cfg):
    batch = next(iter(build_train_loader(synthetic_cfg)))
    assert batch["image"].shape == (2, 3, 64, 96) and len(batch["file_name"]) == 2


def test_num_classes_mismatch_is_explained(synthetic_cfg):
    synthetic_cfg.DATASET.NUM_CLASSES = 19
    with pytest.raises(ValueError, match="NUM_CLASSES 7"):
        build_dataset(synthetic_cfg, "val", is_train=False)


def test_unknown_dataset_and_split(synthetic_cfg):
    synthetic_cfg.DATASET.DATASET = "cityscape"
    with pytest.raises(KeyError, match="synthetic_panoptic"):
        build_dataset(synthetic_cfg, "val", is_train=False)
    with pytest.raises(ValueError, match="valid splits"):
        SyntheticPanoptic("validation")


def test_unreadable_image_and_missing_root_name_the_path(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        read_image(str(bad))
    with pytest.raises(DatasetError, match="missing.png"):
        read_image(str(tmp_path / "missing.png"))
    with pytest.raises(FileNotFoundError, match="DATASET.ROOT"):
        require_dir(str(tmp_path / "nowhere"), "Cityscapes")


def test_upright_applies_the_exif_orientation_and_datasets_read_the_stored_pixels(tmp_path):
    stored = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    for orientation, upright in [(1, stored), (3, stored[::-1, ::-1]), (6, np.rot90(stored, -1)),
                                 (8, np.rot90(stored, 1))]:
        path = str(tmp_path / f"o{orientation}.png")
        save_turned(path, stored, orientation)
        assert np.array_equal(read_image(path), stored)
        assert np.array_equal(read_image(path, upright=True), upright), orientation


def test_image_and_annotation_size_mismatch_names_the_file():
    class Broken(SyntheticPanoptic):
        def load(self, index):
            s = super().load(index)
            s["panoptic"] = s["panoptic"][:-1]
            return s
    with pytest.raises(DatasetError, match="synthetic_val_000000"):
        Broken("val", num_images=1)[0]
