"""Augmentation per image: the recipe's steps as an albumentations ``Compose`` in DataLoader
workers, for steps that have no batched version (:func:`cifarctl.augment.device.unsupported_step`)
or ``data.augment_backend: albumentations``.

Every batch is reseeded from its epoch's loader seed and its number (:class:`SeededBatch`),
whichever worker makes it, so an epoch resumed in the middle gets the same images.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from cifarctl.augment.spec import (
    NOOP_STEPS, check_steps, import_albumentations, make_transform, mean_std, resolve_args, split_step,
)


def build_albumentations(steps: list[dict], normalize: Any = None, seed: int | None = None):
    """The per-image pipeline: ``A.Compose`` of the steps, then ``A.Normalize``.

    ``fill: mean`` is the mean colour of ``normalize``; ToTensorV2/ToFloat are skipped; an
    explicit ``Normalize`` step (last) replaces ``normalize``. The result maps a uint8 HWC
    image to a normalized float32 HWC image. ``seed`` seeds the Compose's own generators
    (albumentations 2 ignores the global numpy/random seeds). Raises ValueError listing
    the problems of invalid steps.
    """
    A = import_albumentations()
    problems = check_steps(steps)
    if problems:
        raise ValueError("; ".join(f"data.augment{w}: {m}" for w, m in problems))
    mean, std = mean_std(normalize)
    transforms, final = [], None
    for step in steps:
        name, args = split_step(step)
        if name in NOOP_STEPS:
            continue
        t = make_transform(name, resolve_args(args, mean))
        if name == "Normalize":
            final = t
        else:
            transforms.append(t)
    transforms.append(final or A.Normalize(mean=mean, std=std, max_pixel_value=255.0))
    return A.Compose(transforms, seed=seed)


class AlbumentationsDataset(torch.utils.data.Dataset):
    """uint8 NHWC images + labels through an albumentations Compose -> (CHW float32, label)."""

    def __init__(self, images: np.ndarray, labels, transform, seed: int | None = None):
        self.images = images
        self.labels = np.asarray(labels)
        self.transform = transform
        if seed is not None:
            self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Seed the Compose's own generators (albumentations 2 ignores global seeds)."""
        self.transform.set_random_seed(int(seed) % 2**32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = self.transform(image=self.images[i])["image"]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), int(self.labels[i])

    def __getitems__(self, indices):
        """A batch (DataLoader with a batch sampler); a :class:`SeededBatch` reseeds first."""
        seed = getattr(indices, "seed", None)
        if seed is not None:
            self.reseed(seed)
        return [self[i] for i in indices]


class SeededBatch(list):
    """One batch's indices and the seed of its augmentation, so that its random draws depend
    neither on which worker makes it nor on what that worker made before: a run resumed in
    the middle of an epoch gets the same images as one that was never stopped."""

    def __init__(self, indices, seed: int):
        super().__init__(indices)
        self.seed = int(seed)

    def __reduce__(self):  # through the workers' queues
        return (SeededBatch, (list(self), self.seed))


def batch_seed(epoch_seed: int, batch: int) -> int:
    """The augmentation seed of batch ``batch`` of an epoch whose loader seed is ``epoch_seed``."""
    return int(np.random.SeedSequence([int(epoch_seed), int(batch)]).generate_state(1)[0])


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding: numpy, random and the dataset's Compose from torch's seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(seed)


def make_albumentations_loader(images: np.ndarray, labels, steps: list[dict], normalize: Any = None,
                               batch_size: int = 128, workers: int = 2, seed: int = 0,
                               shuffle: bool = True, drop_last: bool = False):
    """A DataLoader running the steps per image in ``workers`` processes, reproducible per seed."""
    ds = AlbumentationsDataset(images, labels, build_albumentations(steps, normalize), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=workers,
        worker_init_fn=worker_init_fn, generator=gen, persistent_workers=workers > 0,
    )
