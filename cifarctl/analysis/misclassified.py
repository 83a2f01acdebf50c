"""The test images a trained model gets most wrong, as a PNG grid and a terminal gallery.

``find_misclassified(run_dir_or_checkpoint)`` loads a checkpoint, predicts the test split
(the recipe's ``test_subset``, if any, drawn as in training; normalization from the
checkpoint), keeps the wrong predictions (optionally only those of one true or predicted
class) and sorts them by the confidence of the predicted class or by loss, highest first.
With ``gradcam=True`` each picked image also gets a Grad-CAM map of its predicted class
(:mod:`cifarctl.analysis.gradcam`). ``write_grid`` draws the PNG: one tile per image, upscaled x4
(nearest), with the Grad-CAM overlay beside it, and a caption of true label, predicted
label and confidence.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifarctl.errors import UsageError

SORTS = ("confidence", "loss")
SCALE = 4           # PNG upscale factor (nearest)
GAP = 4             # pixels between the image and its Grad-CAM overlay
MARGIN = 12         # pixels between tiles and around the grid
CAPTION_H = 42      # three caption lines under each tile
MAX_COLS = 5


@dataclass
class Miss:
    """One misclassified test image."""

    index: int          # position in the evaluated test split
    true: str
    pred: str
    confidence: float   # softmax probability of the predicted class, 0..1
    loss: float         # per-image loss of the true class

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "true": self.true, "pred": self.pred,
                "confidence": round(self.confidence, 6), "loss": round(self.loss, 6)}


@dataclass
class Misclassified:
    """What ``find_misclassified`` found; ``images``/``cams`` align with ``items``."""

    items: list[Miss]
    images: np.ndarray                  # (n, 32, 32, 3) uint8
    cams: np.ndarray | None             # (n, 32, 32) float in [0, 1], with gradcam
    layer: str | None                   # Grad-CAM layer
    wrong: int                          # wrong predictions matching the filters
    total_wrong: int                    # wrong predictions in the split
    total: int                          # images evaluated
    classes: list[str]
    checkpoint: Path
    run_dir: Path | None
    sort: str = "confidence"
    png: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the picked items and where the PNG is."""
        return {"checkpoint": str(self.checkpoint), "png": None if self.png is None else str(self.png),
                "sort": self.sort, "layer": self.layer, "total": self.total,
                "total_wrong": self.total_wrong, "matching": self.wrong,
                "accuracy": 100.0 * (self.total - self.total_wrong) / max(self.total, 1),
                "items": [m.to_dict() for m in self.items]}


def class_index(name: str | None, classes: list[str], option: str) -> int | None:
    """Index of a class name (case-insensitive); UsageError listing the valid names."""
    if name is None:
        return None
    lower = [c.lower() for c in classes]
    if name.lower() in lower:
        return lower.index(name.lower())
    raise UsageError(f"{option} {name!r}: unknown class; valid classes: {', '.join(classes)}")


def load_model_and_test_data(target: str | os.PathLike, *, which: str = "best",
                             data_source: str | None = None, device: str = "auto") -> dict[str, Any]:
    """Checkpoint -> {model (eval, on device), checkpoint, path, run_dir, classes, recipe,
    normalize (uint8 NCHW -> float), test_x (uint8 NCHW on device), test_y, device, loss_name}."""
    import torch

    from cifarctl.training.builders import resolve_device
    from cifarctl.data import load_cifar, resolve_source
    from cifarctl.augment.device import make_normalizer
    from cifarctl.registry import create_model
    from cifarctl.runs import find_checkpoint, load_checkpoint, run_dir_of

    path = find_checkpoint(target, which)
    ckpt = load_checkpoint(path)
    dev = resolve_device(device)
    recipe = ckpt.get("recipe") or {}
    data = recipe.get("data") or {}
    model = create_model(ckpt["model_name"], **(ckpt.get("model_args") or {}))
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        from cifarctl.errors import CheckpointError

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: weights do not fit {ckpt['model_name']} ({first})") from None
    model.to(dev).eval()
    # the same data as `cifarctl eval` (cifarctl.analysis.evaluate): source, subsets and seed of the run
    source = resolve_source(data_source or data.get("source") or ckpt.get("data_source"))
    arrays = load_cifar(source, progress=False, train_subset=data.get("train_subset"),
                        test_subset=data.get("test_subset"), seed=int(recipe.get("seed", 0)))
    classes = list(ckpt.get("classes") or arrays.classes)
    normalize = make_normalizer(ckpt.get("normalize") or data.get("normalize"), dev, data.get("augment"))
    test_x = torch.from_numpy(np.ascontiguousarray(arrays.test_x.transpose(0, 3, 1, 2))).to(dev)
    test_y = torch.from_numpy(np.asarray(arrays.test_y, dtype=np.int64)).to(dev)
    return {"model": model, "checkpoint": ckpt, "path": path, "run_dir": run_dir_of(path),
            "classes": classes, "recipe": recipe, "normalize": normalize.normalize_only,
            "test_x": test_x, "test_y": test_y, "device": dev,
            "loss_name": (recipe.get("loss") or {}).get("name", "cross_entropy")}


def predict(model, x_u8, y, normalize, *, loss_name: str = "cross_entropy", batch_size: int = 500):
    """(probabilities (N, C), per-image loss (N,)) on uint8 NCHW images, eval mode, no grad."""
    import torch
    import torch.nn.functional as F

    probs, losses = [], []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(y), batch_size):
            out = model(normalize(x_u8[s:s + batch_size])).float()
            yb = y[s:s + batch_size]
            # nll recipes output log-probabilities: softmax of them is the same distribution
            loss = F.nll_loss(out, yb, reduction="none") if loss_name == "nll" else \
                F.cross_entropy(out, yb, reduction="none")
            probs.append(out.softmax(1))
            losses.append(loss)
    return torch.cat(probs), torch.cat(losses)


def find_misclassified(target: str | os.PathLike, *, n: int = 25, sort: str = "confidence",
                       true: str | None = None, pred: str | None = None, gradcam: bool = False,
                       layer: str | None = None, which: str = "best", data_source: str | None = None,
                       device: str = "auto") -> Misclassified:
    """The ``n`` wrongest test predictions of a run folder's (or a file's) checkpoint."""
    import torch

    if sort not in SORTS:
        raise UsageError(f"--sort {sort!r}: expected one of {', '.join(SORTS)}")
    if n < 1:
        raise UsageError(f"--n {n}: expected at least 1")
    ld = load_model_and_test_data(target, which=which, data_source=data_source, device=device)
    classes, model = ld["classes"], ld["model"]
    ti, pi = class_index(true, classes, "--true"), class_index(pred, classes, "--pred")
    if layer is not None:
        from cifarctl.analysis.gradcam import get_layer

        get_layer(model, layer)  # unknown names fail before the predictions
    probs, losses = predict(model, ld["test_x"], ld["test_y"], ld["normalize"], loss_name=ld["loss_name"])
    conf, guess = probs.max(1)
    y = ld["test_y"]
    wrong = guess != y
    total_wrong = int(wrong.sum())
    if ti is not None:
        wrong &= y == ti
    if pi is not None:
        wrong &= guess == pi
    idx = torch.nonzero(wrong).flatten()
    key = conf[idx] if sort == "confidence" else losses[idx]
    # stable: ties keep test order
    order = torch.sort(key.cpu(), descending=True, stable=True).indices
    picked = idx.cpu()[order][:n]
    items = [Miss(int(i), classes[int(y[i])], classes[int(guess[i])], float(conf[i]), float(losses[i]))
             for i in picked.tolist()]
    images = ld["test_x"][picked.to(ld["test_x"].device)].permute(0, 2, 3, 1).cpu().numpy()
    cams, used = None, None
    if gradcam and items:
        from cifarctl.analysis.gradcam import default_layer
        from cifarctl.analysis.gradcam import gradcam as grad_cam

        used = layer or default_layer(model)
        x = ld["normalize"](ld["test_x"][picked.to(ld["test_x"].device)])
        cams = grad_cam(model, x, used, guess[picked.to(guess.device)]).cpu().numpy()
    elif gradcam:
        used = layer
    return Misclassified(items=items, images=np.ascontiguousarray(images), cams=cams, layer=used,
                         wrong=int(wrong.sum()), total_wrong=total_wrong, total=len(y), classes=classes,
                         checkpoint=ld["path"], run_dir=ld["run_dir"], sort=sort)


# ------------------------------------------------------------------------ output
def caption_lines(m: Miss) -> list[str]:
    return [f"true: {m.true}", f"pred: {m.pred}", f"{100 * m.confidence:.1f}%  loss {m.loss:.2f}"]


def tile_size(with_cam: bool, scale: int = SCALE, side: int = 32) -> tuple[int, int]:
    """(width, height) in pixels of one tile: the image(s) and the caption below."""
    px = side * scale
    return (2 * px + GAP if with_cam else px), px + CAPTION_H


def grid_shape(count: int, cols: int | None = None) -> tuple[int, int]:
    """(columns, rows) of the grid for ``count`` tiles."""
    cols = max(1, min(count, cols or MAX_COLS))
    return cols, max(1, math.ceil(count / cols))


def grid_size(count: int, with_cam: bool, cols: int | None = None, scale: int = SCALE) -> tuple[int, int]:
    """(width, height) of the whole PNG."""
    c, r = grid_shape(count, cols)
    tw, th = tile_size(with_cam, scale)
    return c * tw + (c + 1) * MARGIN, r * th + (r + 1) * MARGIN


def write_grid(result: Misclassified, path: str | os.PathLike, cols: int | None = None) -> Path:
    """Draw the gallery as a PNG (white background, black captions); returns the path."""
    from PIL import Image, ImageDraw, ImageFont

    from cifarctl.analysis.gradcam import overlay

    path = Path(path)
    with_cam = result.cams is not None
    count = len(result.items)
    width, height = grid_size(max(count, 1), with_cam, cols)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    c, _ = grid_shape(max(count, 1), cols)
    tw, th = tile_size(with_cam)
    px = 32 * SCALE
    if not count:
        draw.text((MARGIN, MARGIN), "no misclassified images\nmatch", fill="black", font=font)
    for k, m in enumerate(result.items):
        x0 = MARGIN + (k % c) * (tw + MARGIN)
        y0 = MARGIN + (k // c) * (th + MARGIN)
        img = result.images[k]
        canvas.paste(Image.fromarray(img).resize((px, px), Image.NEAREST), (x0, y0))
        if with_cam:
            blended = overlay(img, result.cams[k])
            canvas.paste(Image.fromarray(blended).resize((px, px), Image.NEAREST), (x0 + px + GAP, y0))
        for j, line in enumerate(caption_lines(m)):
            draw.text((x0, y0 + px + 2 + 13 * j), line, fill=(200, 0, 0) if j == 1 else "black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    result.png = path
    return path


def render_gallery(result: Misclassified, scale: int = 1):
    """The gallery as a rich renderable: half-block images (with the Grad-CAM overlay
    beside each), captioned "true -> pred NN%"."""
    from rich.columns import Columns
    from rich.console import Group
    from rich.text import Text

    from cifarctl.analysis.gradcam import overlay
    from cifarctl.ui.images import image_text

    cells = []
    for k, m in enumerate(result.items):
        img = result.images[k]
        if result.cams is not None:
            img = np.concatenate([img, np.full((32, 1, 3), 0, np.uint8), overlay(img, result.cams[k])], axis=1)
        width = img.shape[1] * scale
        cap = Text(f"{m.true}→{m.pred}", no_wrap=True, overflow="ellipsis", justify="center")
        cap.truncate(width, overflow="ellipsis", pad=True)
        conf = Text(f"{100 * m.confidence:.0f}%", justify="center", style="dim")
        conf.truncate(width, pad=True)
        cells.append(Group(image_text(img, scale), cap, conf))
    return Columns(cells, padding=(0, 1))
