"""Cityscapes and COCO panoptic loaders on tiny datasets written in the official formats (Cityscapes panoptic files
made by cityscapesscripts' own createPanopticImgs), and the dataset checker with one planted fault per kind."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.config import get_default_config
from segmentation.data import build_dataset, build_train_loader, get_metadata
from segmentation.data.check import check_dataset
from segmentation.data.datasets import DatasetError
from segmentation.data.datasets.cityscapes import CITYSCAPES_METADATA
from segmentation.data.transforms import PanopticTargetGenerator, encode_panoptic
from tests.fixtures.fake_datasets import (
    CITYSCAPES_LABEL_IDS,
    COCO_CATEGORY_IDS,
    write_cityscapes,
    write_coco,
    write_coco_panoptic,
)
from tests.fixtures.images import save_turned


def _cfg(dataset, root, num_classes, **extra):
    cfg = get_default_config()
    cfg.DATASET.DATASET, cfg.DATASET.ROOT, cfg.DATASET.NUM_CLASSES = dataset, str(root), num_classes
    cfg.DATASET.TRAIN_SPLIT = cfg.DATASET.TEST_SPLIT = "val"
    for k, v in extra.items():
        setattr(cfg.DATASET, k, v)
    return cfg


def _cityscapes_train_id(label_id):
    from cityscapesscripts.helpers.labels import id2label
    return id2label[label_id].trainId


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes")
    return root, write_cityscapes(str(root), "val", n=3)


def test_cityscapes_panoptic_from_the_official_preparation(cityscapes_root):
    root, written = cityscapes_root
    cfg = _cfg("cityscapes_panoptic", root, 19)
    ds = build_dataset(cfg, "val", is_train=False)
    assert len(ds) == 3 and ds.metadata == CITYSCAPES_METADATA == get_metadata(cfg)
    assert ds.metadata.thing_ids == tuple(range(11, 19)) and ds.metadata.eval_ids[0] == 7
    gen = PanopticTargetGenerator(255, lambda x: x, CITYSCAPES_METADATA.thing_ids, sigma=8, ignore_stuff_in_offset=True)
    index = {ds.load(i)["file_name"]: i for i in range(len(ds))}
    for image_id, (image, ids, segs) in written:
        i = index[image_id]
        s = ds[i]
        mapped = [dict(seg, category_id=_cityscapes_train_id(CITYSCAPES_LABEL_IDS[seg["category_id"]])) for seg in segs]
        expected = encode_panoptic(ids, mapped, CITYSCAPES_METADATA)
        assert torch.equal(s["panoptic"], expected)
        raw = ds.load(i)
        assert np.array_equal(raw["image"], image)
        targets = gen(ids, mapped)
        for key in ("semantic", "center", "offset", "semantic_weights", "center_weights", "offset_weights"):
            assert torch.equal(s[key], targets[key]), key


def test_cityscapes_semantic(cityscapes_root):
    root, written = cityscapes_root
    ds = build_dataset(_cfg("cityscapes", root, 19, SEMANTIC_ONLY=True), "val", is_train=False)
    index = {ds.load(i)["file_name"]: i for i in range(len(ds))}
    for image_id, _ in written:
        i = index[image_id]
        label = np.asarray(Image.open(os.path.join(root, "gtFine", "val", image_id.split("_")[0],
                                                   f"{image_id}_gtFine_labelTrainIds.png")))
        s = ds[i]
        assert torch.equal(s["semantic"], torch.as_tensor(label.astype(np.int64)))
        assert set(s) == {"image", "panoptic", "file_name", "semantic", "semantic_weights"}


def test_missing_cityscapes_root_names_the_folder_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="DATASET.ROOT"):
        build_dataset(_cfg("cityscapes_panoptic", tmp_path / "nowhere", 19), "val", is_train=False)


def _coco_expected(seg_map, segs, meta):
    mapping = {COCO_CATEGORY_IDS[c]: meta.eval_ids.index(COCO_CATEGORY_IDS[c]) for c in range(7)}
    mapped = [dict(s, category_id=mapping[COCO_CATEGORY_IDS[s["category_id"]]]) for s in segs]
    return encode_panoptic(seg_map, mapped, meta)


def test_coco_panoptic_contiguous_things_first(tmp_path):
    written = write_coco(str(tmp_path), "val2017", n=3)
    cfg = _cfg("coco_panoptic", tmp_path, 7)
    ds = build_dataset(cfg, "val", is_train=False)
    meta = ds.metadata
    assert meta.class_names == ("ball", "crate", "cone", "sky", "road", "grass", "wall")
    assert meta.thing_ids == (0, 1, 2) and meta.label_divisor == 256 and get_metadata(cfg) == meta
    for i, (stem, (_, seg_map, segs)) in enumerate(written):
        s = ds[i]
        assert torch.equal(s["panoptic"], _coco_expected(seg_map, segs, meta))
        decoded = np.asarray(Image.open(tmp_path / "val2017" / f"{stem}.jpg").convert("RGB"))
        assert np.array_equal(ds.load(i)["image"], decoded)


def test_coco_pre_augmentation_resize(tmp_path):
    write_coco(str(tmp_path), "val2017", n=1, size=(64, 96))
    cfg = _cfg("coco_panoptic", tmp_path, 7, MIN_RESIZE_VALUE=33, MAX_RESIZE_VALUE=40, RESIZE_FACTOR=8)
    s = build_dataset(cfg, "val", is_train=False)[0]
    # shorter side 64 -> 33 would make the longer 49.5 > 40: scale to 40 / 96, then round up to 8k + 1
    assert s["image"].shape[-2:] == (33, 41) and s["panoptic"].shape == (33, 41)


def _custom(tmp_path, n=2):
    written = write_coco_panoptic(str(tmp_path / "ann" / "pan_val.json"), str(tmp_path / "png_val"),
                                  str(tmp_path / "img_val"), n=n)
    cfg = _cfg("coco_panoptic_format", tmp_path, 7, JSON_FILE="ann/pan_{split}.json", PANOPTIC_DIR="png_{split}",
               IMAGE_DIR="img_{split}")
    return cfg, written


def test_custom_coco_panoptic_format(tmp_path):
    cfg, written = _custom(tmp_path)
    ds = build_dataset(cfg, "val", is_train=False)
    assert ds.metadata.label_divisor == 1000 and ds.metadata.colors[0] == (220, 40, 40)
    for i, (_, (image, seg_map, segs)) in enumerate(written):
        assert torch.equal(ds[i]["panoptic"], _coco_expected(seg_map, segs, ds.metadata))
        assert np.array_equal(ds.load(i)["image"], image)
    cfg.DATASET.JSON_FILE = ""
    with pytest.raises(ValueError, match="DATASET.JSON_FILE"):
        build_dataset(cfg, "val", is_train=False)


@pytest.mark.parametrize("orientation", [6, 3])
def test_photos_tagged_with_an_exif_orientation_and_annotated_upright(tmp_path, capsys, orientation):
    """Image 0 stored turned (a quarter with tag 6, half with tag 3), its annotation drawn on the upright image, as
    labelling tools show photos: DATASET.EXIF_UPRIGHT True reads it upright; the checker says which setting fits
    where the sizes tell (a quarter turn) and notes the tagged images where they cannot (a half turn)."""
    cfg, written = _custom(tmp_path)
    upright = written[0][1][0]
    stored = np.rot90(upright, 1) if orientation == 6 else upright[::-1, ::-1]
    save_turned(tmp_path / "img_val" / "000000000000.png", np.ascontiguousarray(stored), orientation)
    report = check_dataset(build_dataset(cfg, "val", is_train=False))
    assert len(report.notes) == 1 and "1 of 2 images carry an EXIF orientation tag" in report.notes[0]
    assert "as stored, ignoring their tag (DATASET.EXIF_UPRIGHT False)" in report.notes[0]
    if orientation == 6:
        assert report.errors == [f"{tmp_path}/png_val/000000000000.png: annotation is 96x64 but image "
                                 f"{tmp_path}/img_val/000000000000.png is 64x96; it matches the image turned as "
                                 f"its EXIF orientation tag (6) says: set DATASET.EXIF_UPRIGHT True"]
    else:
        assert report.ok  # a half turn keeps the size: only the note can warn
        import check_dataset as tool
        (tmp_path / "cfg.yaml").write_text(cfg.dump())
        assert tool.main(["--cfg", str(tmp_path / "cfg.yaml"), "--split", "val"]) == 0
        assert "NOTE 1 of 2 images carry an EXIF orientation tag" in capsys.readouterr().out
    cfg.DATASET.EXIF_UPRIGHT = True
    ds = build_dataset(cfg, "val", is_train=False)
    report = check_dataset(ds)
    assert report.ok and "upright, turned as their tag says" in report.notes[0]
    assert np.array_equal(ds.load(0)["image"], upright)
    assert ds[0]["image"].shape[-2:] == ds[0]["panoptic"].shape


# ---- checker: one planted fault per kind --------------------------------------------------------------------------

def _json(tmp_path):
    return tmp_path / "ann" / "pan_val.json"


def _edit_json(tmp_path, fn):
    path = _json(tmp_path)
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _segments(data):
    return data["annotations"][0]["segments_info"]


def _stuff_segment(data):
    return next(s for s in _segments(data) if s["category_id"] >= 100)


def _rewrite_png(tmp_path, fn):
    path = tmp_path / "png_val" / "000000000000.png"
    Image.fromarray(fn(np.asarray(Image.open(path)).copy())).save(path)


FAULTS = {
    "image file is missing": lambda p: os.remove(p / "img_val" / "000000000000.png"),
    "image cannot be read": lambda p: (p / "img_val" / "000000000000.png").write_bytes(b"garbage"),
    "panoptic PNG file is missing": lambda p: os.remove(p / "png_val" / "000000000000.png"),
    "is in the PNG but not in segments_info": lambda p: _edit_json(p, lambda d: _segments(d).pop()),
    "is absent from the PNG": lambda p: _edit_json(p, lambda d: _segments(d).append(
        {"id": 999999, "category_id": 105, "iscrowd": 0, "area": 1})),
    "unknown category": lambda p: _edit_json(p, lambda d: _segments(d)[0].update(category_id=4242)),
    "has mode L": lambda p: _rewrite_png(p, lambda a: a[..., 0]),
    "in the JSON but": lambda p: _edit_json(p, lambda d: _segments(d)[0].update(area=_segments(d)[0]["area"] + 1)),
    "marked crowd but": lambda p: _edit_json(p, lambda d: _stuff_segment(d).update(iscrowd=1)),
    "but image": lambda p: _rewrite_png(p, lambda a: a[:-1]),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_checker_finds_each_planted_fault(tmp_path, kind):
    cfg, _ = _custom(tmp_path)
    assert check_dataset(build_dataset(cfg, "val", is_train=False)).ok
    FAULTS[kind](tmp_path)
    report = check_dataset(build_dataset(cfg, "val", is_train=False))
    assert len(report.errors) >= 1 and any(kind in e for e in report.errors), report.errors
    assert all(str(tmp_path) in e for e in report.errors)


def test_checker_cli_exit_codes_and_summary(tmp_path, capsys):
    import check_dataset as tool
    cfg, _ = _custom(tmp_path)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(cfg.dump())
    assert tool.main(["--cfg", str(cfg_file), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "no problem found" in out and "things" in out and "ball" in out
    FAULTS["unknown category"](tmp_path)
    assert tool.main(["--cfg", str(cfg_file), "--split", "val"]) == 1
    assert "unknown category 4242" in capsys.readouterr().out


def test_training_refuses_a_dataset_the_checker_rejects(tmp_path):
    cfg, _ = _custom(tmp_path)
    FAULTS["unknown category"](tmp_path)
    with pytest.raises(DatasetError, match="tools/check_dataset.py"):
        build_train_loader(cfg)


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_during_training_names_the_file(tmp_path, workers):
    cfg, _ = _custom(tmp_path, n=2)
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.TRAIN.IMS_PER_BATCH = 2
    cfg.DATASET.CROP_SIZE = (32, 32)
    loader = build_train_loader(cfg)
    (tmp_path / "img_val" / "000000000001.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(Exception, match="000000000001.png"):
        next(iter(loader))


def test_cs_create_panoptic_imgs_on_train_and_val_needs_set_names(tmp_path):
    """datasets/README.md's commands on a train + val subset (no test split): without --set-names the official
    tool exits 255; with `--set-names train val` it writes what cityscapes_panoptic reads."""
    import subprocess
    import sys
    for split in ("train", "val"):
        write_cityscapes(str(tmp_path), split, n=2, panoptic=False)
    tool = os.path.join(os.path.dirname(sys.executable), "csCreatePanopticImgs")
    gt = str(tmp_path / "gtFine")
    args = [tool, "--dataset-folder", gt, "--output-folder", gt, "--use-train-id"]
    assert subprocess.run(args, capture_output=True, timeout=300).returncode == 255
    r = subprocess.run([*args, "--set-names", "train", "val"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for split in ("train", "val"):
        assert len(build_dataset(_cfg("cityscapes_panoptic", tmp_path, 19), split, is_train=False)) == 2


def test_checker_reads_every_cityscapes_semantic_sample(tmp_path):
    """The semantic loader's datasets are checked sample by sample: a train id outside the 19 classes is named."""
    root = tmp_path / "cs"
    write_cityscapes(str(root), "val", n=2, panoptic=False)
    cfg = _cfg("cityscapes", root, 19)
    report = check_dataset(build_dataset(cfg, "val", is_train=False))
    assert report.ok and report.images == 2 and sum(report.segments_per_class.values()) > 0
    label_file = sorted((root / "gtFine" / "val").glob("*/*_labelTrainIds.png"))[0]
    label = np.asarray(Image.open(label_file)).copy()
    label[0, 0] = 30
    Image.fromarray(label).save(label_file)
    report = check_dataset(build_dataset(cfg, "val", is_train=False))
    assert [e for e in report.errors if str(label_file) in e and "category 30, outside the 19 classes" in e]


def test_checker_counts_the_segments_of_the_synthetic_dataset():
    from segmentation.config import load_config
    from tests.conftest import ROOT
    cfg = load_config(os.path.join(ROOT, "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml"),
                      ["DATASET.SYNTHETIC.TRAIN_SIZE", "5"])
    report = check_dataset(build_dataset(cfg, "train", is_train=False))
    assert report.ok and report.images == 5 and sum(report.segments_per_class.values()) >= 15
    assert report.thing_pixels > 0 and report.stuff_pixels > 0


def test_checker_cli_reports_an_unprepared_cityscapes_root_as_an_error_line(tmp_path, capsys):
    import check_dataset as tool
    root = tmp_path / "cs"
    write_cityscapes(str(root), "val", n=1, panoptic=False)  # no createPanopticImgs JSON
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(_cfg("cityscapes_panoptic", root, 19).dump())
    assert tool.main(["--cfg", str(cfg_file), "--split", "val"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("ERROR Annotation file") and "cityscapes_panoptic_val_trainId.json" in out
