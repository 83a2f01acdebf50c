"""Classify the user's own image files with a trained run: ``cifarctl predict``.

``predict_files(inf, paths)`` takes image files and folders (a folder: every file with an
image suffix under it, recursively, sorted), prepares each image as the run's data was
prepared (:func:`cifarctl.data.images.fit`: RGB, the shorter side resized to the run's
``data.image_size``, the centre crop) and predicts batches of them with
:func:`cifarctl.training.evaluation.evaluate`, the function ``cifarctl eval`` uses: the
same normalization, precision, channels_last and test-time augmentation, so an image
that is one of the run's test images gets the probabilities ``eval`` gave it.

A file that cannot be read as an image (not an image, too large, a FIFO, a
decompression bomb) is one line in ``errors``; the others are still predicted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cifarctl.analysis.gradcam import default_layer, get_layer, gradcam
from cifarctl.analysis.inference import check_options
from cifarctl.analysis.misclassified import draw_grid
from cifarctl.data.images import IMAGE_SUFFIXES, decode, file_problem
from cifarctl.errors import UsageError
from cifarctl.training.evaluation import evaluate

MAX_BATCH = 256
MAX_GRADCAM = 100  # tiles in the --gradcam PNG  # images decoded and held at once: a folder of photos never fills the memory


@dataclass
class Predicted:
    """One image's prediction: the top classes with their probabilities, best first."""

    path: str
    top: list[tuple[str, float]]
    image: np.ndarray | None = None   # (S, S, 3) uint8 as the model saw it, kept for Grad-CAM
    cam: np.ndarray | None = None     # (S, S) in [0, 1]

    def to_dict(self) -> dict:
        return {"path": self.path, "top": [{"class": c, "probability": round(p, 6)} for c, p in self.top]}


@dataclass
class Predictions:
    items: list[Predicted]
    errors: list[str]
    tta: str
    image_size: int
    checkpoint: Path
    layer: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "tta": self.tta, "image_size": self.image_size,
                "resize": f"shorter side to {self.image_size} px (bicubic), centre crop",
                "predictions": [p.to_dict() for p in self.items], "errors": list(self.errors)}


def expand_inputs(paths: list[str | os.PathLike]) -> tuple[list[str], list[str]]:
    """(files to predict, error lines): a folder gives its image files (by suffix,
    recursively, hidden ones skipped, sorted); a named file is tried whatever its suffix."""
    files, errors = [], []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = []
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, n) for n in names
                          if not n.startswith(".") and n.lower().endswith(IMAGE_SUFFIXES)]
            if not found:
                errors.append(f"{p}: no image files in this folder ({', '.join(IMAGE_SUFFIXES[:4])}, ...)")
            files += sorted(found)
        elif os.path.lexists(p) and not os.path.exists(p):
            errors.append(f"{p}: dangling symbolic link")
        elif not os.path.exists(p):
            errors.append(f"{p}: no such file or folder")
        else:
            why = file_problem(p)
            if why:
                errors.append(f"{p}: {why}")
            else:
                files.append(p)
    return files, errors


def predict_arrays(inf, x_u8: torch.Tensor, tta: str) -> torch.Tensor:
    """Class probabilities (N, K) of uint8 NCHW images on the device, as ``eval`` computes them."""
    r = inf.recipe
    y = torch.zeros(len(x_u8), dtype=torch.int64, device=x_u8.device)  # evaluate wants labels; unused here
    res = evaluate(inf.model, x_u8, y, normalize=inf.normalize, batch_size=r.data.test_batch_size,
                   loss_name=r.loss.name, autocast=inf.autocast, channels_last=inf.channels_last, tta=tta,
                   per_image=True)
    return res["probs"]


def predict_files(inf, paths: list[str | os.PathLike], *, top_k: int = 5, tta: str | None = None,
                  gradcam_layer: str | None = None, gradcam: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> Predictions:
    """Predict every image in ``paths`` (files and folders); see the module docstring.

    ``tta=None``: the recipe's ``eval_tta``. ``gradcam``: a Grad-CAM map of the top class
    per image (layer ``gradcam_layer``, default the last conv with a spatial output)."""
    check_options("test", tta)
    if top_k < 1:
        raise UsageError(f"--top {top_k}: expected at least 1")
    tta = inf.recipe.eval_tta if tta is None else tta
    files, errors = expand_inputs(paths)
    size = inf.image_size
    layer = None
    if gradcam:

        layer = gradcam_layer or default_layer(inf.model)
        get_layer(inf.model, layer)
    k = min(top_k, len(inf.classes))
    items: list[Predicted] = []
    done = 0
    batch = max(1, min(MAX_BATCH, inf.recipe.data.test_batch_size))
    for start in range(0, len(files), batch):
        names, arrays = [], []
        for f in files[start:start + batch]:
            arr, err = decode(f, f, size)
            if err:
                errors.append(err)
            else:
                names.append(f)
                arrays.append(arr)
        if arrays:
            x = torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy()).to(inf.device)
            probs = predict_arrays(inf, x, tta).float().cpu()
            values, idx = probs.topk(k, dim=1)
            cams = _cams(inf, x, idx[:, 0], layer) if layer and len(items) < MAX_GRADCAM else None
            for i, name in enumerate(names):
                items.append(Predicted(name, [(inf.classes[j], float(v)) for v, j in
                                              zip(values[i].tolist(), idx[i].tolist())],
                                       image=arrays[i] if layer and len(items) < MAX_GRADCAM else None,
                                       cam=None if cams is None or len(items) >= MAX_GRADCAM else cams[i]))
        done += len(files[start:start + batch])
        if progress:
            progress(done, len(files))
    return Predictions(items, errors, tta, size, inf.path, layer)


def _cams(inf, x_u8: torch.Tensor, classes: torch.Tensor, layer: str) -> np.ndarray:
    return gradcam(inf.model, inf.normalize(x_u8), layer, classes.to(inf.device)).cpu().numpy()


def write_gradcam(result: Predictions, path: str | os.PathLike, run_name: str) -> Path:
    """The images with their Grad-CAM overlays and top class as one PNG (``--gradcam OUT.png``)."""
    items = [p for p in result.items if p.cam is not None][:MAX_GRADCAM]
    side = result.image_size
    images = np.stack([p.image for p in items]) if items else np.zeros((0, side, side, 3), np.uint8)
    cams = np.stack([p.cam for p in items]) if items else np.zeros((0, side, side), np.float32)
    captions = [[Path(p.path).name[:22], f"{p.top[0][0][:20]}", f"{100 * p.top[0][1]:.1f}%"] for p in items]
    shown = f"{len(items)} images" + (f" (the first of {len(result.items)})" if len(result.items) > len(items) else "")
    title = [f"{run_name}  ·  {result.checkpoint.name}  ·  {shown}",
             f"Grad-CAM of the top class: {result.layer}  ·  {side}x{side} input"]
    return draw_grid(images, cams, captions, title, path, user_path=True)
