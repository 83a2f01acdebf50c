"""Evaluation: loss, accuracy and predictions of a model on uint8 images, with test-time
augmentation. Used by every epoch's test accuracy and by ``cifarctl eval``/``misclassified``
(through :mod:`cifarctl.analysis.inference`), so they all compute the same numbers.

Test-time augmentation (``tta``): the views a model sees, and how they are averaged:

- ``none``: the image;
- ``flip``: the mean of the image's and its mirror image's outputs;
- ``flip_translate`` (airbench94's tta_level 2): ``flip`` of the image weighted 1/2, and
  ``flip`` of the image shifted one pixel diagonally, down-right and up-left (reflect
  padding), weighted 1/4 each: six views.

Every view of a batch goes through the model in one forward pass, and every forward pass
of an evaluation has the same shape (``data.test_batch_size`` inputs at most, the last
chunk padded): a compiled model compiles once for evaluation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from cifarctl.recipe.schema import TTA_MODES


def tta_views(x: torch.Tensor, mode: str = "none") -> tuple[list[torch.Tensor], list[float]]:
    """The views of a batch ``x`` (N,C,H,W) under test-time augmentation ``mode``, and the
    weight of each view's outputs in the average."""
    if mode == "none":
        return [x], [1.0]
    if mode == "flip":
        return [x, x.flip(3)], [0.5, 0.5]
    if mode == "flip_translate":
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        a, b = padded[:, :, :h, :w], padded[:, :, 2:, 2:]
        return [x, x.flip(3), a, a.flip(3), b, b.flip(3)], [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    raise ValueError(f"unknown test-time augmentation {mode!r} (expected one of {', '.join(TTA_MODES)})")


def tta_forward(model, x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """The model's outputs on a batch ``x`` (N,C,H,W) under test-time augmentation ``mode``:
    every view in one forward pass (the views concatenated, in ``x``'s memory format)."""
    views, weights = tta_views(x, mode)
    if len(views) == 1:
        return model(x)
    batch = torch.cat(views)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        batch = batch.contiguous(memory_format=torch.channels_last)  # reflect-pad views are NCHW
    out = model(batch).float().unflatten(0, (len(views), len(x)))
    return (out * _view_weights(tuple(weights), out.device)).sum(0)


@functools.lru_cache(maxsize=16)
def _view_weights(weights: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """The views' weights as a (views, 1, 1) float32 tensor on ``device``, made once: a
    tensor built from Python per chunk is a pageable host-to-device copy that waits."""
    return torch.tensor(weights, dtype=torch.float32, device=device).view(-1, 1, 1)


def view_count(mode: str) -> int:
    """How many views :func:`tta_forward` passes through the model per image."""
    return {"none": 1, "flip": 2, "flip_translate": 6}.get(mode, 1)


def chunking(n: int, batch_size: int, views: int = 1) -> int:
    """Images per forward pass over ``n`` images: as even as possible, at most
    ``batch_size`` model inputs (views included). :func:`evaluate` pads the last chunk to
    this size, so every forward pass of an evaluation has the same shape."""
    most = max(1, batch_size // max(views, 1))
    chunks = max(1, -(-n // most))
    return max(1, -(-n // chunks))


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
    n = len(y)
    size = chunking(n, batch_size, view_count(tta))
    try:
        for s in range(0, n, size):
            xb = x_u8[s:s + size]
            short = size - len(xb)
            if short:  # the same shape as every other pass: a compiled model is not recompiled
                xb = torch.cat([xb, xb.new_zeros((short, *xb.shape[1:]))])
            xb = normalize(xb)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast():
                out = tta_forward(model, xb, tta)
            out = out.float()[:size - short]
            yb = y[s:s + size]
            loss_sum += eval_loss(out, yb, loss_name).double()
            preds.append(out.argmax(1))
            if per_image:  # nll outputs are log-probabilities: their softmax is the same distribution
                probs.append(out.softmax(1))
                losses.append(eval_loss(out, yb, loss_name, reduction="none"))
    finally:
        model.train(was_training)
    pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64, device=y.device)
    loss_total, correct = torch.stack([loss_sum, (pred == y).sum().double()]).tolist()
    result = {"loss": loss_total / max(n, 1), "acc": 100.0 * correct / max(n, 1), "preds": pred, "n": n}
    if per_image:
        result["probs"] = torch.cat(probs) if probs else torch.empty(0, 0, device=y.device)
        result["losses"] = torch.cat(losses) if losses else torch.empty(0, device=y.device)
    return result
