"""Optional model hooks the engine calls when a model defines them (duck-typed).

- ``model.data_init(images)``: set weights from training data before the first step of a
  fresh run (the speedrun net's patch-whitening conv). ``images`` are normalized float
  NCHW, as the model sees them in ``forward``, on the model's device: at most
  ``DATA_INIT_IMAGES`` train images taken at an even stride (no random numbers are drawn,
  and a class-sorted data set still gives every class). A resumed run skips nothing
  here: the checkpoint's weights replace whatever this set.
- ``model.frozen_parameters(epoch)``: the parameters that stay as they are during epoch
  ``epoch`` (0-based), e.g. the speedrun net's whitening bias after its first epochs.
  The engine puts them back after every optimizer step (:class:`Freezer`) instead of
  flipping ``requires_grad``: the set of parameters with gradients never changes, so a
  compiled model is not recompiled and DDP needs no ``find_unused_parameters``.
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


class Freezer:
    """Keeps ``model.frozen_parameters(epoch)`` at their values from the epoch's start."""

    def __init__(self, model: nn.Module, epoch: int):
        hook = getattr(model, "frozen_parameters", None)
        self.params = list(hook(epoch)) if hook is not None else []
        self.values = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def after_step(self) -> None:
        if self.params:
            torch._foreach_copy_(self.params, self.values)
