"""One way to load a trained model for inference, and one way to predict with it.

``load_for_inference(run_dir_or_checkpoint)`` reads a checkpoint (``weights_only=True``),
validates its stored recipe, rebuilds the model from ``model_name``/``model_args``, loads
the data the run used (the stored recipe's source, subsets and seed, unless ``data`` is
given) and the recipe's normalization: an :class:`Inference`. ``predict(inference)``
evaluates a split with :func:`cifarctl.training.evaluation.evaluate`, exactly as training
measured each epoch's test accuracy: the recipe's test batch size, loss, precision,
channels_last and test-time augmentation (``eval_tta``).

``cifarctl eval``, ``cifarctl misclassified`` and Grad-CAM all start here, so they report
the same accuracy for the same checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cifarctl.errors import CheckpointError, UsageError
from cifarctl.recipe import TTA_MODES, Recipe
from cifarctl.training.builders import uses_channels_last

SPLITS = ("test", "train")


def check_options(split: str = "test", tta: str | None = None) -> None:
    """UsageError for a split or test-time augmentation that does not exist."""
    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    if tta is not None and tta not in TTA_MODES:
        raise UsageError(f"--tta {tta!r}: expected one of {', '.join(TTA_MODES)}")


@dataclass
class Inference:
    """A checkpoint's model in eval mode on its device, with the recipe and data of its run."""

    model: nn.Module
    recipe: Recipe              # the stored, validated recipe
    checkpoint: dict[str, Any]  # everything but the weights (epoch, step, classes, ...)
    path: Path                  # the checkpoint file
    run_dir: Path | None        # the run folder it belongs to, if any
    classes: list[str]
    data: Any                   # cifarctl.data.CifarArrays
    source: str                 # the data source, resolved
    normalize: Callable         # uint8 NCHW on the device -> normalized float32
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def model_name(self) -> str:
        return self.checkpoint["model_name"]

    def autocast(self):
        from cifarctl.training.builders import autocast

        return autocast(self.device, self.amp_dtype)

    def split(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 NCHW images, int64 labels) of ``split``, on the device."""
        check_options(split)
        d = self.data
        x, y = (d.test_x, d.test_y) if split == "test" else (d.train_x, d.train_y)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device)
        return x, torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)


def load_for_inference(target: str | os.PathLike, *, which: str = "last", data: str | None = None,
                       device: str | torch.device = "auto", progress: bool = False) -> Inference:
    """A run folder's ``checkpoints/<which>.pt`` (or a checkpoint file) ready to predict."""
    from cifarctl.augment.device import make_normalizer
    from cifarctl.data import load_cifar, resolve_source
    from cifarctl.recipe import validate_dict
    from cifarctl.registry import create_model
    from cifarctl.runs import find_checkpoint, load_checkpoint, run_dir_of
    from cifarctl.training.builders import precision_for, resolve_device

    path = find_checkpoint(target, which)
    ckpt = load_checkpoint(path)
    recipe = validate_dict(ckpt["recipe"], f"{path} (stored recipe)")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    model = create_model(ckpt["model_name"], **(ckpt.get("model_args") or {}))
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: the weights do not fit model {ckpt['model_name']!r} ({first})") from None
    channels_last = uses_channels_last(recipe, dev)
    model.to(dev).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    source = resolve_source(data or recipe.data.source or ckpt.get("data_source"))
    arrays = load_cifar(source, progress=progress, train_subset=recipe.data.train_subset,
                        test_subset=recipe.data.test_subset, seed=recipe.seed)
    amp_dtype, _ = precision_for(recipe.precision, dev)
    return Inference(
        model=model, recipe=recipe, checkpoint={k: v for k, v in ckpt.items() if k != "model"}, path=path,
        run_dir=run_dir_of(path), classes=list(ckpt.get("classes") or arrays.classes), data=arrays,
        source=source, normalize=make_normalizer(recipe.data.normalize, dev, recipe.data.augment).normalize_only,
        device=dev, amp_dtype=amp_dtype, channels_last=channels_last)


def predict(inf: Inference, split: str = "test", *, tta: str | None = None, per_image: bool = False) -> dict:
    """Loss, accuracy (%), predictions (``preds``) and ``n`` on ``split``, as training measured
    them; ``per_image`` adds ``probs`` (N, classes) and per-image ``losses``. ``tta=None`` is
    the recipe's ``eval_tta``. Also returns the ``tta`` used and the split's images ``x``
    (uint8 NCHW) and labels ``y``, on the device."""
    from cifarctl.training.evaluation import evaluate

    check_options(split, tta)
    tta = inf.recipe.eval_tta if tta is None else tta
    x, y = inf.split(split)
    r = inf.recipe
    res = evaluate(inf.model, x, y, normalize=inf.normalize, batch_size=r.data.test_batch_size,
                   loss_name=r.loss.name, autocast=inf.autocast, channels_last=inf.channels_last, tta=tta,
                   per_image=per_image)
    return {**res, "tta": tta, "x": x, "y": y}
