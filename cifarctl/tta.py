"""Test-time augmentation: the views a model sees at evaluation, and how they are averaged.

- ``none``: the image;
- ``flip``: the mean of the image's and its mirror image's outputs;
- ``flip_translate`` (airbench94's tta_level 2): ``flip`` of the image weighted 1/2, and
  ``flip`` of the image shifted one pixel diagonally, down-right and up-left (reflect
  padding), weighted 1/4 each: six forward passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cifarctl.recipe import TTA_MODES


def _mirror(model, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * model(x) + 0.5 * model(x.flip(3))


def tta_forward(model, x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """The model's outputs on a batch ``x`` (N,C,H,W) under test-time augmentation ``mode``."""
    if mode == "none":
        return model(x)
    if mode == "flip":
        return _mirror(model, x)
    if mode == "flip_translate":
        plain = _mirror(model, x)
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = (_mirror(model, padded[:, :, :h, :w]) + _mirror(model, padded[:, :, 2:, 2:])) / 2
        return 0.5 * plain + 0.5 * shifted
    raise ValueError(f"unknown test-time augmentation {mode!r} (expected one of {', '.join(TTA_MODES)})")
