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

``predict_cached(inference)`` is ``predict`` with a memory: each split's latest pass is kept
in ``eval-predictions-<split>.npz`` beside ``eval.json`` (per image: prediction, class probabilities,
loss), keyed by the checkpoint's SHA-256, the split, the test-time augmentation, the data
(source, image count and labels), the device type and the cifarctl version. The next
``eval``, ``misclassified`` or ``report`` of the same checkpoint on the same data reads it
back instead of predicting again; anything else that differs predicts anew.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cifarctl import CLASSES, __version__, fsutil, registry
from cifarctl.augment.device import make_normalizer
from cifarctl.checkpoints import find_checkpoint, load_checkpoint, model_weights
from cifarctl.data import load_cifar, resolve_source
from cifarctl.errors import CheckpointError, CifarctlError, UsageError
from cifarctl.recipe.load import validate_dict
from cifarctl.recipe.schema import TTA_MODES, Recipe
from cifarctl.runs import run_dir_of
from cifarctl.training.builders import autocast, precision_for, resolve_device, uses_channels_last
from cifarctl.training.checkpoint import weights_mismatch
from cifarctl.training.evaluation import evaluate

SPLITS = ("test", "train")
PREDICTIONS_FILE = "eval-predictions-{split}.npz"

log = logging.getLogger("cifarctl.analysis")


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
    def image_size(self) -> int:
        """The side of the square uint8 images the model takes (``data.image_size``)."""
        return int(self.recipe.data.image_size)

    @property
    def model_name(self) -> str:
        return self.checkpoint["model_name"]

    def autocast(self):
        return autocast(self.device, self.amp_dtype)

    def split(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 NCHW images, int64 labels) of ``split``, on the device."""
        check_options(split)
        d = self.data
        x, y = (d.test_x, d.test_y) if split == "test" else (d.train_x, d.train_y)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device)
        return x, torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)


def load_for_inference(target: str | os.PathLike, *, which: str = "last", data: str | None = None,
                       device: str | torch.device = "auto", progress: bool = False,
                       arrays=None, with_data: bool = True,
                       build: Callable[..., nn.Module] | None = None) -> Inference:
    """A run folder's ``checkpoints/<which>.pt`` (or a checkpoint file) ready to predict.

    ``arrays``: the data already loaded from ``data`` (the caller's
    :func:`~cifarctl.data.load_cifar` with the stored recipe's subsets), not loaded again.
    ``build``: what makes the model from the checkpoint's ``(model_name, **model_args)``
    (default :func:`~cifarctl.registry.create_model`); a caller that has built it already
    returns its own, whose weights are then replaced by the checkpoint's.
    ``with_data=False``: the run's data is not loaded (``data`` is None; the classes are the
    checkpoint's): for predicting images that are not the run's."""
    path = find_checkpoint(target, which)
    ckpt = load_checkpoint(path)
    recipe = validate_dict(ckpt["recipe"], f"{path} (stored recipe)")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    try:
        model = (build or registry.create_model)(ckpt["model_name"], **(ckpt.get("model_args") or {}))
    except UsageError as exc:  # the checkpoint's model_args (or name): say which checkpoint
        raise CheckpointError(f"{path}: {exc}") from None
    args = ckpt.get("model_args")
    what = f"model {ckpt['model_name']!r}" + (f" with model_args {str(args)[:120]}" if args else "")
    weights = model_weights(ckpt)  # the averaged weights when the run had ema
    problem = weights_mismatch(model, weights)
    if problem:
        raise CheckpointError(f"{path}: the weights do not fit {what}: {problem}")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: the weights do not fit {what} ({first[:200]})") from None
    model.eval()
    outputs = _outputs(model, recipe.data.image_size)
    classes = _stored_classes(path, ckpt.get("classes"), outputs, what)
    channels_last = uses_channels_last(recipe, dev)
    model.to(dev).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    source = resolve_source(data or recipe.data.source or ckpt.get("data_source"))
    if with_data and arrays is None:
        arrays = load_cifar(source, progress=progress, train_subset=recipe.data.train_subset,
                            test_subset=recipe.data.test_subset, seed=recipe.seed,
                            image_size=recipe.data.image_size, label_kind=recipe.data.label_kind)
    if arrays is not None:
        if classes is None and outputs is not None and outputs != len(arrays.classes):
            raise CheckpointError(f"{path}: {what} gives {outputs} scores per image but the data {source} has "
                                  f"{len(arrays.classes)} classes")
        if list(classes or arrays.classes) != list(arrays.classes):
            raise CheckpointError(f"{path}: its classes ({_names(classes)}) are not those of the data {source} "
                                  f"({_names(arrays.classes)}): its predictions would not mean the data's labels")
        classes = list(arrays.classes)
    elif classes is None:  # a checkpoint from before classes were stored: CIFAR-10's

        classes = list(CLASSES)
    amp_dtype, _ = precision_for(recipe.precision, dev)
    return Inference(
        model=model, recipe=recipe, checkpoint={k: v for k, v in ckpt.items() if k not in ("model", "ema")}, path=path,
        run_dir=run_dir_of(path), classes=list(classes), data=arrays,
        source=source, normalize=make_normalizer(recipe.data.normalize, dev, recipe.data.augment).normalize_only,
        device=dev, amp_dtype=amp_dtype, channels_last=channels_last)


def _outputs(model: nn.Module, size: int = 32) -> int | None:
    """How many scores ``model`` (in eval mode, on the CPU) gives an image: one forward pass
    of two blank images of the run's size; None when it does not give (N, K)."""
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, 3, size, size))
    except Exception:  # noqa: BLE001  the weights loaded; a model this check cannot run says so later
        return None
    return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.ndim == 2 else None


def _names(classes, shown: int = 4) -> str:
    items = [str(c)[:20] for c in list(classes)[:shown]]
    return ", ".join(items) + (f", ... ({len(classes)} in all)" if len(classes) > shown else "")


def _stored_classes(path: Path, classes: Any, outputs: int | None, what: str) -> list[str] | None:
    """The checkpoint's class list, checked: distinct names, one per score of the model."""
    if classes is None:
        return None
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes) \
            or len(set(classes)) != len(classes) or not classes:
        shown = repr(classes)[:80]
        raise CheckpointError(f"{path}: its class list is not a list of distinct class names ({shown})")
    if outputs is not None and len(classes) != outputs:
        raise CheckpointError(f"{path}: its class list has {len(classes)} classes ({_names(classes)}) but "
                              f"{what} gives {outputs} scores per image")
    return list(classes)


def predict(inf: Inference, split: str = "test", *, tta: str | None = None, per_image: bool = False) -> dict:
    """Loss, accuracy (%), predictions (``preds``) and ``n`` on ``split``, as training measured
    them; ``per_image`` adds ``probs`` (N, classes) and per-image ``losses``. ``tta=None`` is
    the recipe's ``eval_tta``. Also returns the ``tta`` used and the split's images ``x``
    (uint8 NCHW) and labels ``y``, on the device."""
    check_options(split, tta)
    tta = inf.recipe.eval_tta if tta is None else tta
    x, y = inf.split(split)
    r = inf.recipe
    res = evaluate(inf.model, x, y, normalize=inf.normalize, batch_size=r.data.test_batch_size,
                   loss_name=r.loss.name, autocast=inf.autocast, channels_last=inf.channels_last, tta=tta,
                   per_image=per_image)
    return {**res, "tta": tta, "x": x, "y": y}


# ------------------------------------------------------------------------ predictions kept on disk
def predictions_path(inf: Inference, split: str = "test") -> Path:
    """``eval-predictions-<split>.npz`` in the run folder (beside a loose checkpoint)."""
    return (inf.run_dir or inf.path.parent) / PREDICTIONS_FILE.format(split=split)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def predictions_key(inf: Inference, split: str, tta: str) -> dict[str, Any]:
    """What a kept pass must match to stand for a new one."""
    d = inf.data
    y = np.ascontiguousarray(np.asarray(d.test_y if split == "test" else d.train_y, dtype=np.int64))
    return {"checkpoint_sha256": _sha256(inf.path), "split": split, "tta": tta, "source": str(inf.source),
            "images": int(len(y)), "labels_sha256": hashlib.sha256(y.tobytes()).hexdigest(),
            "classes": list(inf.classes), "device": inf.device.type, "cifarctl": __version__}


def _read_predictions(path: Path, key: dict[str, Any], inf: Inference, split: str) -> dict | None:
    if not path.is_file():
        return None
    try:

        if not zipfile.is_zipfile(path):
            raise ValueError("not an .npz file")
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("key") != key:
                return None
            preds, probs, losses = z["preds"], z["probs"], z["losses"]
        n = key["images"]
        if preds.shape != (n,) or probs.shape != (n, len(inf.classes)) or losses.shape != (n,):
            raise ValueError(f"arrays of shapes {preds.shape}, {probs.shape}, {losses.shape} for {n} images")
    except Exception as exc:  # noqa: BLE001 - a damaged file only costs a new pass
        log.warning("warning: %s is unreadable (%s); predicting again", path, str(exc).splitlines()[0][:200]
                    if str(exc) else type(exc).__name__)
        return None
    x, y = inf.split(split)
    dev = inf.device
    return {"loss": float(meta["loss"]), "acc": float(meta["acc"]), "n": n, "tta": key["tta"], "x": x, "y": y,
            "preds": torch.from_numpy(preds.astype(np.int64)).to(dev), "probs": torch.from_numpy(probs).to(dev),
            "losses": torch.from_numpy(losses).to(dev), "cached": True}


def _write_predictions(path: Path, key: dict[str, Any], res: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps({"key": key, "loss": res["loss"], "acc": res["acc"]})),
             preds=res["preds"].cpu().numpy().astype(np.int16), probs=res["probs"].float().cpu().numpy(),
             losses=res["losses"].float().cpu().numpy())
    try:
        fsutil.write_atomic(path, buf.getbuffer())
    except CifarctlError as exc:  # a read-only run folder: the next pass predicts again, nothing else is lost
        log.warning("warning: predictions not kept (%s)", exc)


def predict_cached(inf: Inference, split: str = "test", *, tta: str | None = None, keep: bool = True) -> dict:
    """:func:`predict` with ``per_image``, read back from :data:`PREDICTIONS_FILE` when that
    holds this checkpoint's pass on the same split, augmentation, data, device type and
    cifarctl version (``"cached": True`` in the result); else predicted, and kept there
    (``keep``) for the next caller."""
    check_options(split, tta)
    tta = inf.recipe.eval_tta if tta is None else tta
    path = predictions_path(inf, split)
    key = predictions_key(inf, split, tta)
    res = _read_predictions(path, key, inf, split)
    if res is not None:
        return res
    res = predict(inf, split, tta=tta, per_image=True)
    if keep:
        _write_predictions(path, key, res)
    return {**res, "cached": False}
