import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.config import load_config
from segmentation.data.datasets import render_scene
from segmentation.model import build_model
from tests.conftest import ROOT
from tests.fixtures.images import save_turned

SMALL = ["MODEL.DECODER.DECODER_CHANNELS", "32", "MODEL.BACKBONE.PRETRAINED", "False"]


def _checkpoint(cfg_path, tmp_path, opts=()):
    cfg = load_config(cfg_path, [*SMALL, *opts])
    torch.manual_seed(0)
    path = tmp_path / "model.pth"
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return str(path)


def _inputs(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    frames = []
    for i in range(2):
        image = render_scene(rng, 64, 96)[0]
        Image.fromarray(image).save(folder / f"img{i}.png")
        frames.append(image)
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    for image in frames:
        writer.write(image[..., ::-1])
    writer.release()
    return str(folder), video


@pytest.mark.parametrize("config", ["panoptic_deeplab_mbv2_synthetic.yaml", "om_learnable_centers.yaml"])
def test_demo_on_a_folder_and_a_video_with_dumps(tmp_path, config):
    import demo
    cfg_path = os.path.join(ROOT, "configs/synthetic", config)
    ckpt = _checkpoint(cfg_path, tmp_path)
    folder, video = _inputs(tmp_path)
    out = tmp_path / "out"
    demo.main(["--cfg", cfg_path, "--input", folder, video, "--output", str(out), "--merge-image", "--dump",
               "center_pred", "offset_pred", "semantic_prob_pred", "thing_mask_pred", "--opts", *SMALL,
               "TEST.MODEL_FILE", ckpt])
    names = {"img0", "img1", "clip_000000", "clip_000001"}
    for sub in ("semantic", "instance", "panoptic", "dump/center_pred", "dump/offset_pred",
                "dump/semantic_prob_pred", "dump/thing_mask_pred"):
        files = {os.path.splitext(f)[0] for f in os.listdir(out / sub)}
        assert files == names, sub
        assert cv2.imread(str(out / sub / "img0.png")).shape == (64, 96, 3)
    for kind in ("semantic", "instance", "panoptic"):  # a video in gives a video out
        capture = cv2.VideoCapture(str(out / f"clip_{kind}.mp4"))
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 2
        assert capture.read()[1].shape == (64, 96, 3)
        capture.release()


def test_demo_needs_only_weights_and_metadata(tmp_path):
    """A Cityscapes config without any Cityscapes file: the class table comes from cityscapesscripts."""
    import demo
    cfg_path = os.path.join(ROOT, "configs/cityscapes/panoptic_deeplab_MBNV2_os32_cityscapes_om.yaml")
    opts = ["DATASET.ROOT", str(tmp_path / "no_dataset_here")]
    ckpt = _checkpoint(cfg_path, tmp_path, opts)
    folder, _ = _inputs(tmp_path)
    demo.main(["--cfg", cfg_path, "--input", folder, "--output", str(tmp_path / "out"), "--opts", *SMALL, *opts,
               "TEST.MODEL_FILE", ckpt])
    assert len(os.listdir(tmp_path / "out" / "panoptic")) == 2


def test_demo_errors_name_the_problem(tmp_path):
    import demo
    cfg_path = os.path.join(ROOT, "configs/synthetic/panoptic_deeplab_mbv2_synthetic.yaml")
    ckpt = _checkpoint(cfg_path, tmp_path)
    folder, _ = _inputs(tmp_path)
    with pytest.raises(ValueError, match="Variables it can dump: center_pred"):
        demo.main(["--cfg", cfg_path, "--input", folder, "--output", str(tmp_path / "o"), "--dump", "centre_pred",
                   "--opts", *SMALL, "TEST.MODEL_FILE", ckpt])
    # a ground-truth variable: the demo has no ground truth, and the list it offers holds none
    with pytest.raises(ValueError, match="--dump center_truth: not computable from an image alone") as info:
        demo.main(["--cfg", cfg_path, "--input", folder, "--output", str(tmp_path / "o"), "--dump", "center_truth",
                   "--opts", *SMALL, "TEST.MODEL_FILE", ckpt])
    assert "_truth" not in str(info.value).split("Variables it can dump:")[1]
    with pytest.raises(ValueError, match="not a per-pixel map"):
        demo.main(["--cfg", cfg_path, "--input", folder, "--output", str(tmp_path / "o"), "--dump",
                   "centroids_pred", "--opts", *SMALL, "TEST.MODEL_FILE", ckpt])
    with pytest.raises(FileNotFoundError, match="neither"):
        demo.main(["--cfg", cfg_path, "--input", str(tmp_path / "nothing.png"), "--output", str(tmp_path / "o"),
                   "--opts", *SMALL, "TEST.MODEL_FILE", ckpt])


def test_images_are_read_upright(tmp_path):
    import demo
    image = render_scene(np.random.default_rng(0), 64, 96)[0]
    save_turned(tmp_path / "portrait.png", np.rot90(image, 1).copy(), 6)
    (name, rgb, video), = demo.iter_inputs([str(tmp_path / "portrait.png")])
    assert name == "portrait" and video is None and np.array_equal(rgb, image)
    (_, rgb, _), = demo.iter_inputs([str(tmp_path)])
    assert np.array_equal(rgb, image)
