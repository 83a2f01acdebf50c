"""Optional model hooks the engine calls when a model defines them (duck-typed).

- ``model.data_init(images)``: set weights from training data before the first step of a
  fresh run (the speedrun net's patch-whitening conv). ``images`` are normalized float
  NCHW, as the model sees them in ``forward``, on the model's device: at most
  ``DATA_INIT_IMAGES`` train images taken at an even stride (no random numbers are drawn,
  and a class-sorted data set still gives every class). A resumed run skips nothing
  here: the checkpoint's weights replace whatever this set.
- ``model.start_epoch(epoch)``: before each epoch (0-based), also on resume. It may
  freeze or unfreeze parameters (``requires_grad``), so a model with this hook is trained
  under DistributedDataParallel with ``find_unused_parameters`` (:func:`changes_trainable`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

DATA_INIT_IMAGES = 5000  # airbench94 whitens from 5,000 train images


def init_from_data(model: nn.Module, images, normalize: Callable, device: torch.device,
                   max_images: int = DATA_INIT_IMAGES) -> bool:
    """Call ``model.data_init`` with normalized train images; False when it has none.

    ``images``: uint8 NCHW tensor, or uint8 NHWC numpy array (the loaded arrays).
    """
    hook = getattr(model, "data_init", None)
    if hook is None:
        return False
    stride = max(1, len(images) // max_images)
    picked = images[::stride][:max_images]
    if isinstance(picked, np.ndarray):
        picked = torch.from_numpy(np.ascontiguousarray(picked.transpose(0, 3, 1, 2)))
    hook(normalize(picked.to(device)))
    return True


def changes_trainable(model: nn.Module) -> bool:
    """Whether the set of parameters that get gradients may change during the run."""
    return callable(getattr(model, "start_epoch", None))


def start_epoch(model: nn.Module, epoch: int) -> None:
    """Call ``model.start_epoch(epoch)`` if the model has it."""
    hook = getattr(model, "start_epoch", None)
    if hook is not None:
        hook(epoch)
