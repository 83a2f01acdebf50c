"""Evaluation: loss, accuracy and predictions of a model on uint8 images, with test-time
augmentation. Used by every epoch's test accuracy and by ``cifarctl eval``/``misclassified``
(through :mod:`cifarctl.analysis.inference`), so they all compute the same numbers.

Test-time augmentation (``tta``): the views a model sees, and how they are averaged:

- ``none``: the image;
- ``flip``: the mean of the image's and its mirror image's outputs;
- ``flip_translate`` (airbench94's tta_level 2): ``flip`` of the image weighted 1/2, and
  ``flip`` of the image shifted one pixel diagonally, down-right and up-left (reflect
  padding), weighted 1/4 each: six forward passes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

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


def eval_loss(out: torch.Tensor, y: torch.Tensor, loss_name: str, reduction: str = "sum") -> torch.Tensor:
    """Test loss: plain cross-entropy (no smoothing), or nll on the outputs; summed by default."""
    if loss_name == "nll":
        return F.nll_loss(out, y, reduction=reduction)
    return F.cross_entropy(out, y, reduction=reduction)


@torch.no_grad()
def evaluate(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, *, normalize: Callable,
             batch_size: int, loss_name: str = "cross_entropy", autocast=nullcontext,
             channels_last: bool = False, tta: str = "none", per_image: bool = False) -> dict:
    """Loss, accuracy (%) and predictions on uint8 NCHW images, in eval mode, no grad.

    ``{"loss", "acc", "preds", "n"}``; ``per_image`` adds ``probs`` (softmax of the outputs,
    N x classes) and ``losses`` (N). ``tta``: ``none``, ``flip`` or ``flip_translate`` (see
    :func:`tta_forward`). The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x_u8.device)
    preds, probs, losses = [], [], []
    try:
        for s in range(0, len(y), batch_size):
            xb = normalize(x_u8[s:s + batch_size])
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast():
                out = tta_forward(model, xb, tta)
            out = out.float()
            yb = y[s:s + batch_size]
            loss_sum += eval_loss(out, yb, loss_name).double()
            preds.append(out.argmax(1))
            if per_image:  # nll outputs are log-probabilities: their softmax is the same distribution
                probs.append(out.softmax(1))
                losses.append(eval_loss(out, yb, loss_name, reduction="none"))
    finally:
        model.train(was_training)
    pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64, device=y.device)
    n = max(len(y), 1)
    loss_total, correct = torch.stack([loss_sum, (pred == y).sum().double()]).tolist()
    result = {"loss": loss_total / n, "acc": 100.0 * correct / n, "preds": pred, "n": len(y)}
    if per_image:
        result["probs"] = torch.cat(probs) if probs else torch.empty(0, 0, device=y.device)
        result["losses"] = torch.cat(losses) if losses else torch.empty(0, device=y.device)
    return result
