"""Training augmentation on numpy arrays (image uint8 [H, W, 3], label int [H, W]), as the original pipeline."""
import cv2
import numpy as np
import torch


class RandomScale:
    """Rescale by a factor drawn from ``arange(min, max + step, step)`` (uniform in [min, max] if step is 0).

    The image is resized bilinearly, the label with nearest neighbour.
    """

    def __init__(self, min_scale, max_scale, scale_step_size):
        if min_scale <= 0 or max_scale < min_scale:
            raise ValueError(f"Invalid scale range [{min_scale}, {max_scale}]: check DATASET.MIN_SCALE/MAX_SCALE.")
        self.min_scale, self.max_scale, self.step = min_scale, max_scale, scale_step_size

    def get_scale(self, rng):
        if self.min_scale == self.max_scale:
            return self.min_scale
        if self.step == 0:
            return rng.uniform(self.min_scale, self.max_scale)
        n = int((self.max_scale - self.min_scale) / self.step + 1)
        return self.min_scale + self.step * rng.integers(0, n)

    def __call__(self, image, label, rng):
        scale = self.get_scale(rng)
        if scale == 1.0:
            return image, label
        h, w = label.shape
        size = (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        return image, label


class RandomCrop:
    """Random crop to ``crop_size``; smaller inputs are padded first (image with ``image_pad``, label with
    ``label_pad``) at a random position."""

    def __init__(self, crop_size, image_pad, label_pad):
        self.crop_h, self.crop_w = int(crop_size[0]), int(crop_size[1])
        self.image_pad = tuple(float(v) for v in image_pad)
        self.label_pad = label_pad

    def __call__(self, image, label, rng):
        h, w = label.shape
        pad_h, pad_w = max(self.crop_h - h, 0), max(self.crop_w - w, 0)
        if pad_h or pad_w:
            top, left = int(rng.integers(0, pad_h + 1)), int(rng.integers(0, pad_w + 1))
            image = cv2.copyMakeBorder(image, top, pad_h - top, left, pad_w - left, cv2.BORDER_CONSTANT,
                                       value=self.image_pad)
            label = cv2.copyMakeBorder(label, top, pad_h - top, left, pad_w - left, cv2.BORDER_CONSTANT,
                                       value=self.label_pad)
            h, w = label.shape
        y = int(rng.integers(0, h - self.crop_h + 1))
        x = int(rng.integers(0, w - self.crop_w + 1))
        return image[y:y + self.crop_h, x:x + self.crop_w], label[y:y + self.crop_h, x:x + self.crop_w]


class RandomHorizontalFlip:
    """Flip image and label left-right with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, image, label, rng):
        if rng.random() < self.p:
            return image[:, ::-1], label[:, ::-1]
        return image, label


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, label, rng):
        for t in self.transforms:
            image, label = t(image, label, rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


def to_tensor(image):
    """uint8 [H, W, 3] -> float32 tensor [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image).transpose(2, 0, 1)).float().div_(255.0)


def normalize(tensor, mean, std):
    """(tensor - mean) / std per channel, out of place."""
    mean = torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return (tensor - mean) / std


def build_train_transforms(cfg):
    d = cfg.DATASET
    ts = [RandomScale(d.MIN_SCALE, d.MAX_SCALE, d.SCALE_STEP_SIZE),
          RandomCrop(d.CROP_SIZE, image_pad=[m * 255 for m in d.MEAN], label_pad=0)]
    if d.MIRROR:
        ts.append(RandomHorizontalFlip())
    return Compose(ts)
