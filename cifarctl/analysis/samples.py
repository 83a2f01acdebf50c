"""Training images as a recipe's augmentation shows them to the model (what seed 002's
write-up pictures): a few images per class, and the same images after the train
augmentation, as uint8 for display (the normalisation undone)."""

from __future__ import annotations

import numpy as np
import torch

from cifarctl.augment.device import compile_steps
from cifarctl.augment.per_image import build_albumentations
from cifarctl.augment.spec import mean_std


def per_class(labels: np.ndarray, num_classes: int, k: int) -> list[int]:
    """The first ``k`` indices of each class, class by class (fewer where a class has fewer)."""
    labels = np.asarray(labels)
    return [int(i) for c in range(num_classes) for i in np.flatnonzero(labels == c)[:k]]


def augment_for_display(images: np.ndarray, steps: list, normalize, seed: int = 0) -> np.ndarray:
    """``images`` (N, H, W, C uint8) through the augmentation ``steps`` as training applies
    them (batched where every step has a batched version, else albumentations per image),
    returned as uint8 N, H, W, C with the normalisation undone."""

    images = np.ascontiguousarray(images)
    if not steps:
        return images.copy()
    aug = compile_steps(steps, normalize, "cpu")
    if aug is not None:
        gen = torch.Generator().manual_seed(seed)
        out = aug(torch.from_numpy(images).permute(0, 3, 1, 2), gen)
        pixels = (out - aug.bias) / aug.scale  # undo (x * scale + bias)
        return pixels.round().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    pipe = build_albumentations(steps, normalize, seed=seed)
    mean, std = mean_std(normalize)
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    out = np.stack([pipe(image=img)["image"] for img in images])
    return np.clip(np.rint((out * s + m) * 255), 0, 255).astype(np.uint8)
