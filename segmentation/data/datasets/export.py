"""Write small datasets in the official Cityscapes and COCO panoptic file formats from the synthetic generator, so
that the real loaders, the official preparation scripts and the evaluators can be exercised without downloads."""
import json
import os

import numpy as np
from PIL import Image

from .synthetic import SYNTHETIC_METADATA, render_scene

# synthetic train id -> Cityscapes label id: sky, road, vegetation, building, car, truck, person
CITYSCAPES_LABEL_IDS = (23, 7, 21, 11, 26, 27, 24)
# synthetic train id -> a COCO-like (non-contiguous) category id
COCO_CATEGORY_IDS = (105, 115, 125, 135, 3, 7, 11)


def _scenes(n, seed, size):
    rng = np.random.default_rng(seed)
    return [render_scene(rng, *size, max_objects=8, crowd_prob=0.5) for _ in range(n)]


def write_cityscapes(root, split="val", n=3, seed=0, size=(64, 128), panoptic=True):
    """Write ``leftImg8bit`` images and ``gtFine`` labelIds / instanceIds / labelTrainIds PNGs; with ``panoptic``,
    also run cityscapesscripts' ``createPanopticImgs`` (train ids and eval ids), as one prepares Cityscapes.

    Returns the list of (image id, scene) written, scene = (image, segment-id map, segments) in synthetic train ids.
    """
    from cityscapesscripts.helpers.labels import id2label
    written = []
    for i, scene in enumerate(_scenes(n, seed, size)):
        image, ids, segs = scene
        city = ("aachen", "bochum")[i % 2]
        image_id = f"{city}_{i:06d}_000019"
        label = np.zeros(ids.shape, np.uint8)
        instance = np.zeros(ids.shape, np.uint16)
        per_class = {}
        for seg in segs:
            mask = ids == seg["id"]
            label_id = CITYSCAPES_LABEL_IDS[seg["category_id"]]
            label[mask] = label_id
            if seg["category_id"] in SYNTHETIC_METADATA.thing_ids and not seg["iscrowd"]:
                k = per_class.get(label_id, 0)
                per_class[label_id] = k + 1
                instance[mask] = label_id * 1000 + k
            else:
                instance[mask] = label_id
        train = np.vectorize(lambda v: id2label[int(v)].trainId if v else 255)(label).astype(np.uint8)
        img_dir = os.path.join(root, "leftImg8bit", split, city)
        gt_dir = os.path.join(root, "gtFine", split, city)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(gt_dir, exist_ok=True)
        Image.fromarray(image).save(os.path.join(img_dir, f"{image_id}_leftImg8bit.png"))
        Image.fromarray(label).save(os.path.join(gt_dir, f"{image_id}_gtFine_labelIds.png"))
        Image.fromarray(instance).save(os.path.join(gt_dir, f"{image_id}_gtFine_instanceIds.png"))
        Image.fromarray(train).save(os.path.join(gt_dir, f"{image_id}_gtFine_labelTrainIds.png"))
        written.append((image_id, scene))
    if panoptic:
        import contextlib
        import io

        from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
        with contextlib.redirect_stdout(io.StringIO()):
            for use_train_id in (True, False):
                convert2panoptic(os.path.join(root, "gtFine"), os.path.join(root, "gtFine"), use_train_id, [split])
    return written


def coco_categories():
    """COCO-style categories of the synthetic classes (non-contiguous ids, isthing, colours)."""
    m = SYNTHETIC_METADATA
    return [{"id": COCO_CATEGORY_IDS[c], "name": m.class_names[c], "isthing": int(c in m.thing_ids),
             "color": list(m.colors[c]), "supercategory": "synthetic"} for c in range(m.num_classes)]


def write_coco_panoptic(json_file, png_dir, image_dir, n=3, seed=0, size=(64, 96), image_ext=".png"):
    """Write images, RGB-encoded panoptic PNGs and the panoptic JSON (segment ids spread over the three channels).

    Returns the list of (file stem, scene) written, scene in synthetic train ids and segment ids of the PNG.
    """
    for d in (png_dir, image_dir, os.path.dirname(json_file)):
        os.makedirs(d, exist_ok=True)
    images, annotations, written = [], [], []
    for i, (image, ids, segs) in enumerate(_scenes(n, seed, size)):
        stem = f"{i:012d}"
        new_ids = {s["id"]: 70000 + 257 * s["id"] for s in segs}  # exercise all three colour channels
        seg_map = np.zeros(ids.shape, np.int64)
        for old, new in new_ids.items():
            seg_map[ids == old] = new
        rgb = np.stack([seg_map % 256, seg_map // 256 % 256, seg_map // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(os.path.join(png_dir, stem + ".png"))
        Image.fromarray(image).save(os.path.join(image_dir, stem + image_ext))
        infos = [{"id": new_ids[s["id"]], "category_id": COCO_CATEGORY_IDS[s["category_id"]],
                  "iscrowd": s["iscrowd"], "area": s["area"], "bbox": [0, 0, 1, 1]} for s in segs]
        images.append({"id": i + 1, "file_name": stem + image_ext, "height": size[0], "width": size[1]})
        annotations.append({"image_id": i + 1, "file_name": stem + ".png", "segments_info": infos})
        segs = [dict(s, id=new_ids[s["id"]]) for s in segs]
        written.append((stem, (image, seg_map, segs)))
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": coco_categories()}, f)
    return written


def write_coco_instances(json_file, written, size):
    """The COCO instances JSON (RLE masks of the thing segments, crowd flagged) of scenes from write_coco_panoptic."""
    from pycocotools import mask as mask_util
    m = SYNTHETIC_METADATA
    annotations = []
    for i, (_, (_, seg_map, segs)) in enumerate(written):
        for s in segs:
            if s["category_id"] not in m.thing_ids:
                continue
            rle = mask_util.encode(np.asfortranarray((seg_map == s["id"]).astype(np.uint8)))
            bbox = [float(v) for v in mask_util.toBbox(rle)]
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "iscrowd": s["iscrowd"],
                                "category_id": COCO_CATEGORY_IDS[s["category_id"]], "segmentation": rle,
                                "area": float(mask_util.area(rle)), "bbox": bbox})
    images = [{"id": i + 1, "file_name": f"{stem}.jpg", "height": size[0], "width": size[1]}
              for i, (stem, _) in enumerate(written)]
    categories = [c for c in coco_categories() if c["isthing"]]
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def write_coco(root, split="val2017", size=(64, 96), **kw):
    """The COCO 2017 layout under ``root``: annotations/panoptic_{split}.json + folder, {split}/ images and
    annotations/instances_{split}.json."""
    written = write_coco_panoptic(os.path.join(root, "annotations", f"panoptic_{split}.json"),
                                  os.path.join(root, "annotations", f"panoptic_{split}"), os.path.join(root, split),
                                  image_ext=".jpg", size=size, **kw)
    write_coco_instances(os.path.join(root, "annotations", f"instances_{split}.json"), written, size)
    return written
