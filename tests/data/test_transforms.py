import numpy as np

from segmentation.data.transforms import RandomCrop, RandomHorizontalFlip, RandomScale, normalize, to_tensor


def test_scale_crop_flip_keep_image_and_label_aligned():
    rng = np.random.default_rng(0)
    label = np.arange(12 * 16, dtype=np.int32).reshape(12, 16)
    image = np.stack([label % 256] * 3, -1).astype(np.uint8)
    img, lab = RandomScale(2.0, 2.0, 0)(image, label, rng)
    assert lab.shape == (24, 32) and lab[1, 1] == label[0, 0] and lab.dtype == np.int32
    img, lab = RandomCrop((30, 20), image_pad=(1, 2, 3), label_pad=0)(img, lab, rng)
    assert lab.shape == (30, 20) and img.shape == (30, 20, 3)
    padded_rows = (lab == 0).all(1) & (img[..., 0] == 1).all(1)
    assert padded_rows.sum() == 6  # 30 - 24 rows of padding: void label, mean image colour
    img2, lab2 = RandomHorizontalFlip(p=1.0)(img, lab, rng)
    assert np.array_equal(lab2, lab[:, ::-1]) and np.array_equal(img2, img[:, ::-1])


def test_scale_choices_follow_the_step():
    t = RandomScale(0.5, 2.0, 0.25)
    rng = np.random.default_rng(0)
    scales = {round(t.get_scale(rng), 6) for _ in range(500)}
    assert scales == {0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}


def test_to_tensor_and_normalize():
    x = to_tensor(np.full((2, 2, 3), 255, np.uint8))
    assert x.shape == (3, 2, 2) and x.max() == 1.0
    y = normalize(x, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert y.eq(1.0).all()
