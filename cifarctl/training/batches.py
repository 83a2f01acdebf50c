"""Training batches: the data set on the device, one permutation per epoch, batched augmentation.

The whole uint8 train set lives on the training device as NCHW. Each epoch draws a
permutation from the engine's ``torch.Generator``; batch ``i`` is ``perm[i*bs:(i+1)*bs]``
(full batches only: the ragged rest of the permutation is left out, a different rest each
epoch); :class:`cifarctl.augment.device.DeviceAugment` augments a block of consecutive
batches (:data:`BLOCK_IMAGES` images) at once, as airbench augments its epoch: its ~90
small ops are paid once a block instead of once a step (a GPU step is launch-bound).

When a step has no batched version (``unsupported_step``) or the recipe says
``augment_backend: albumentations``, batches come from a DataLoader over
``cifarctl.augment.per_image.AlbumentationsDataset`` with ``data.workers`` workers instead, in the same order.

Augmentation draws come from a generator of their own, reseeded for every block from a
number the epoch draws (``EpochPlan.aug_seed``), the block's index and the rank. Data-parallel
(``world_size`` > 1): every rank draws the same permutation and takes ``batch_size /
world_size`` images of each global batch (``_shard``), so runs are deterministic for a
given number of processes.

Replay: an epoch is fully determined by the generator state at its start (saved in
mid-epoch checkpoints): a resumed epoch redraws its permutation and seed, augments the
block it stopped in again and continues bit for bit. The albumentations path reseeds every
batch from the epoch's loader seed and the batch number (``SeededBatch``), whichever
worker makes it, so a resumed epoch continues bit for bit there too.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from cifarctl.augment.device import compile_steps, make_normalizer, unsupported_step
from cifarctl.augment.per_image import SeededBatch, batch_seed
from cifarctl.errors import UsageError
from cifarctl.recipe.schema import Recipe
from cifarctl.training.builders import uses_channels_last

BLOCK_IMAGES = 4096  # images augmented at once (~50 MB as float32): a whole number of batches, >= 1


def count_steps(n: int, batch_size: int, world_size: int = 1) -> int:
    """Batches per epoch: full batches only; the last ``n % batch_size`` images of each
    epoch's permutation wait for a later epoch (airbench does the same). Every step has
    the same shape, so a compiled model is never recompiled for a ragged batch, and each
    of ``world_size`` ranks takes ``batch_size / world_size`` images of every batch."""
    return n // batch_size


def images_used(n: int, batch_size: int, world_size: int = 1) -> int:
    """How many images of the epoch's permutation the :func:`count_steps` batches take."""
    return count_steps(n, batch_size, world_size) * batch_size


def _shard(perm: torch.Tensor, rank: int, world_size: int, used: int) -> torch.Tensor:
    """This rank's slice of the global permutation: every ``world_size``-th of the images used.

    With ``batch_size / world_size`` images per rank and step, rank r's batch i is
    ``perm[i*batch_size : (i+1)*batch_size][r::world_size]``: the ranks together take
    exactly the single-process batch i.
    """
    return perm if world_size == 1 else perm[:used][rank::world_size]


class Batches:
    """Where training batches come from; ``plan(saved)`` gives one epoch's iterator."""

    def __init__(self, recipe: Recipe, arrays, device: torch.device, generator: torch.Generator,
                 rank: int = 0, world_size: int = 1, notices: list[str] | None = None):
        d = recipe.data
        self.device, self.generator = device, generator
        self.rank, self.world_size = rank, world_size
        if d.batch_size % world_size:
            raise UsageError(f"data.batch_size {d.batch_size} does not split over {world_size} processes: "
                             f"each takes batch_size / {world_size} images of every batch; use a multiple "
                             f"of {world_size}")
        self.batch_size = d.batch_size // world_size  # per rank
        self.n = len(arrays.train_y)
        self.steps_per_epoch = count_steps(self.n, d.batch_size, world_size)
        self.used = images_used(self.n, d.batch_size, world_size)
        if self.steps_per_epoch == 0:
            raise UsageError(f"{self.n} train images make no full batch of data.batch_size "
                             f"{d.batch_size}: use a smaller batch_size")
        # Augmentation randomness of its own (per rank), reseeded every block from the
        # epoch's draw (EpochPlan.aug_seed), so the shared generator stays in step.
        self.aug_generator = torch.Generator(device=device)
        self.block = max(1, BLOCK_IMAGES // self.batch_size)  # batches augmented at once
        self.channels_last = uses_channels_last(recipe, device)
        self.workers = d.workers
        self.normalize = make_normalizer(d.normalize, device, d.augment)
        step = unsupported_step(d.augment) if d.augment else None
        reason = None
        if d.augment_backend == "albumentations":
            reason = "data.augment_backend is albumentations"
        elif step is not None:
            if d.augment_backend == "device":
                raise UsageError(f"data.augment: step {step} has no batched device version; set "
                                 "data.augment_backend to auto or albumentations")
            reason = f"step {step} has no batched device version"
        self.loader_mode = reason is not None
        self.y = torch.from_numpy(np.asarray(arrays.train_y, dtype=np.int64)).to(device)
        if self.loader_mode:
            from cifarctl.augment.per_image import AlbumentationsDataset, build_albumentations

            self.dataset = AlbumentationsDataset(arrays.train_x, arrays.train_y,
                                                 build_albumentations(d.augment, d.normalize))
            self.x = None
            self.aug = None
            self.sampler = _EpochBatches()
            self._loader = None
            if notices is not None:
                notices.append(f"augmentation: albumentations per image in {d.workers} DataLoader "
                               f"worker(s), not on the device ({reason})")
        else:
            x = np.ascontiguousarray(arrays.train_x.transpose(0, 3, 1, 2))
            self.x = torch.from_numpy(x).to(device)
            self.aug = compile_steps(d.augment, d.normalize, device) if d.augment else None

    def loader(self):
        """The run's DataLoader over the albumentations dataset: made once, its workers kept
        between epochs (every batch carries its own augmentation seed, whichever worker
        makes it, so keeping them changes no image)."""
        if self._loader is None:
            from cifarctl.augment.per_image import worker_init_fn

            self._loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self.sampler, num_workers=self.workers,
                worker_init_fn=worker_init_fn, persistent_workers=self.workers > 0,
                generator=torch.Generator().manual_seed(0),  # its own: the global RNG is the model's
                pin_memory=self.device.type == "cuda")
        return self._loader

    def plan(self, saved: dict | None = None) -> EpochPlan:
        """This epoch's order: drawn now, or replayed from ``saved["epoch_generator"]``."""
        g = self.generator
        if saved:
            current = g.get_state()
            g.set_state(saved["epoch_generator"])
        start_state = g.get_state()
        perm = torch.randperm(self.n, generator=g, device=g.device)
        loader_seed = aug_seed = None
        if self.loader_mode:
            loader_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=g.device).item())
            if self.world_size > 1:
                loader_seed = (loader_seed + 7919 * self.rank) % (2**31 - 1)
        elif self.aug is not None:  # one host read an epoch, at its start
            aug_seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item())
        if saved:
            g.set_state(current)
        return EpochPlan(self, _shard(perm, self.rank, self.world_size, self.used).to(self.device),
                         start_state, loader_seed, aug_seed)


class EpochPlan:
    """One epoch's batches; ``iterate(start)`` skips the first ``start`` of them."""

    def __init__(self, batches: Batches, idx: torch.Tensor, start_state: torch.Tensor,
                 loader_seed: int | None, aug_seed: int | None = None):
        self.b, self.idx, self.start_state, self.loader_seed = batches, idx, start_state, loader_seed
        self.aug_seed = aug_seed  # seeds the augmentation of each block (with its index and the rank)
        self.steps = batches.steps_per_epoch

    def _bounds(self, i: int) -> tuple[int, int]:
        bs = self.b.batch_size
        return i * bs, min((i + 1) * bs, len(self.idx))

    def iterate(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        b = self.b
        if b.loader_mode:
            yield from self._loader(start)
            return
        bs, k = b.batch_size, b.block
        for i in range(start, self.steps):
            j = i % k
            if i == start or j == 0:  # a new block of batches (or the one a resume stopped in)
                first = i - j
                x, y = self._block(first // k, first, min(first + k, self.steps))
            yield x[j * bs:(j + 1) * bs], y[j * bs:(j + 1) * bs]

    def _block(self, n: int, first: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Block ``n``: batches ``first`` .. ``end - 1``, augmented (and normalized) at once."""
        b = self.b
        bi = self.idx[self._bounds(first)[0]:self._bounds(end - 1)[1]]
        xb = b.x[bi]
        if b.aug is not None:
            b.aug_generator.manual_seed(self.aug_seed + n * b.world_size + b.rank)
            x = b.aug(xb, b.aug_generator)
        else:
            x = b.normalize.normalize_only(xb)
        if b.channels_last:  # a batch-dimension slice of it stays channels_last
            x = x.contiguous(memory_format=torch.channels_last)
        return x, b.y[bi]

    def _loader(self, start: int):
        b = self.b
        order = self.idx.cpu()
        b.sampler.batches = [SeededBatch(order[slice(*self._bounds(i))].tolist(), batch_seed(self.loader_seed, i))
                             for i in range(start, self.steps)]
        b.dataset.reseed(self.loader_seed)  # used as is when workers == 0
        for x, y in b.loader():
            x = x.to(b.device, non_blocking=True)
            if b.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(b.device, non_blocking=True)


class _EpochBatches:
    """The batch sampler of the one DataLoader a run keeps: this epoch's seeded batches,
    set before each epoch (read in the main process, so persistent workers see them)."""

    def __init__(self):
        self.batches: list = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
