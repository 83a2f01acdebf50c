"""The test images a trained model gets most wrong, as a PNG grid and a terminal gallery.

``find_misclassified(run_dir_or_checkpoint)`` loads a checkpoint and predicts the test
split through :mod:`cifarctl.analysis.inference`, exactly as ``cifarctl eval`` does (the
run's data, the recipe's normalization, ``eval_tta``, batch size and precision), keeps the
wrong predictions (optionally only those of one true or predicted class) and sorts them by
the confidence of the predicted class or by loss, highest first.
With ``gradcam=True`` each picked image also gets a Grad-CAM map of its predicted class
(:mod:`cifarctl.analysis.gradcam`). ``write_grid`` draws the PNG: a title (run, checkpoint and
its epoch, test accuracy, what is shown, the Grad-CAM layer), then one tile per image,
upscaled x4 (nearest), with the Grad-CAM overlay beside it, and a caption of true label,
predicted label and confidence.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarctl.analysis.gradcam import default_layer, get_layer, overlay
from cifarctl.analysis.gradcam import gradcam as grad_cam
from cifarctl.analysis.inference import load_for_inference, predict_cached
from cifarctl.errors import UsageError
from cifarctl.fsutil import write_atomic

SORTS = ("confidence", "loss")
SCALE = 4           # PNG upscale factor (nearest)
GAP = 4             # pixels between the image and its Grad-CAM overlay
MARGIN = 12         # pixels between tiles and around the grid
CAPTION_H = 42      # three caption lines under each tile
TITLE_H = 44        # two title lines above the grid
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
    epoch: int | None = None            # epochs the checkpoint had completed
    step_in_epoch: int = 0              # > 0: saved mid-epoch (a stopped run's last.pt)
    true_filter: str | None = None      # --true, --pred
    pred_filter: str | None = None

    @property
    def accuracy(self) -> float:
        """Test accuracy (%) of the predictions: the one `cifarctl eval` reports."""
        return 100.0 * (self.total - self.total_wrong) / max(self.total, 1)

    @property
    def epoch_label(self) -> str:
        """``epoch 3``, ``epoch 4 at step 10`` when saved mid-epoch, or '' when unknown."""
        if self.epoch is None:
            return ""
        if self.step_in_epoch:
            return f"epoch {self.epoch + 1} at step {self.step_in_epoch}"
        return f"epoch {self.epoch}"

    @property
    def checkpoint_label(self) -> str:
        """``best.pt, epoch 3``."""
        return ", ".join(x for x in (self.checkpoint.name, self.epoch_label) if x)

    def title_lines(self) -> list[str]:
        """The PNG's title: which run and checkpoint, its accuracy; what is shown, Grad-CAM layer."""
        run = self.run_dir.name if self.run_dir is not None else str(self.checkpoint.parent)
        filters = ", ".join(f for f in (f"true {self.true_filter}" if self.true_filter else "",
                                         f"pred {self.pred_filter}" if self.pred_filter else "") if f)
        shown = (f"showing {len(self.items)} of {self.wrong} misclassified{' (' + filters + ')' if filters else ''}, "
                 f"{'most confident' if self.sort == 'confidence' else 'highest loss'} first")
        return [f"{run}  ·  {self.checkpoint_label}  ·  test accuracy {self.accuracy:.2f}% "
                f"({self.total_wrong} of {self.total} wrong)",
                shown + (f"  ·  Grad-CAM: {self.layer}" if self.layer else "")]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the picked items and where the PNG is."""
        return {"checkpoint": str(self.checkpoint), "epoch": self.epoch,
                "png": None if self.png is None else str(self.png),
                "sort": self.sort, "layer": self.layer, "total": self.total,
                "total_wrong": self.total_wrong, "matching": self.wrong,
                "accuracy": self.accuracy,
                "items": [m.to_dict() for m in self.items]}


def class_index(name: str | None, classes: list[str], option: str) -> int | None:
    """Index of a class name (case-insensitive); UsageError listing the valid names."""
    if name is None:
        return None
    lower = [c.lower() for c in classes]
    if name.lower() in lower:
        return lower.index(name.lower())
    raise UsageError(f"{option} {name!r}: unknown class; valid classes: {', '.join(classes)}")


def find_misclassified(target: str | os.PathLike, *, n: int = 25, sort: str = "confidence",
                       true: str | None = None, pred: str | None = None, gradcam: bool = False,
                       layer: str | None = None, which: str = "best", data_source: str | None = None,
                       device: str = "auto", inference=None, predictions: dict | None = None) -> Misclassified:
    """The ``n`` wrongest test predictions of a run folder's (or a file's) checkpoint.

    ``inference`` (a loaded :class:`~cifarctl.analysis.inference.Inference`) and
    ``predictions`` (its ``predict(..., "test", per_image=True)``) skip loading and
    predicting again when the caller has them (``cifarctl report``: one pass for the
    evaluation and the misclassified images). Otherwise the checkpoint's kept predictions
    are read when they match (:func:`~cifarctl.analysis.inference.predict_cached`)."""
    if sort not in SORTS:
        raise UsageError(f"--sort {sort!r}: expected one of {', '.join(SORTS)}")
    if n < 1:
        raise UsageError(f"--n {n}: expected at least 1")
    inf = inference or load_for_inference(target, which=which, data=data_source, device=device)
    classes, model = inf.classes, inf.model
    ti, pi = class_index(true, classes, "--true"), class_index(pred, classes, "--pred")
    if layer is not None:

        get_layer(model, layer)  # unknown names fail before the predictions
    # the predictions `cifarctl eval` makes: the recipe's eval_tta, batch size and precision
    res = predictions or predict_cached(inf, "test")
    x, y, guess, losses = res["x"], res["y"], res["preds"], res["losses"]
    conf = res["probs"].gather(1, guess.view(-1, 1)).squeeze(1)
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
    chosen = x[picked.to(x.device)]
    images = chosen.permute(0, 2, 3, 1).cpu().numpy()
    cams, used = None, None
    if gradcam and items:

        used = layer or default_layer(model)
        cams = grad_cam(model, inf.normalize(chosen), used, guess[picked.to(guess.device)]).cpu().numpy()
    elif gradcam:
        used = layer
    ckpt = inf.checkpoint
    return Misclassified(items=items, images=np.ascontiguousarray(images), cams=cams, layer=used,
                         wrong=int(wrong.sum()), total_wrong=total_wrong, total=len(y), classes=classes,
                         checkpoint=inf.path, run_dir=inf.run_dir, sort=sort, epoch=ckpt.get("epoch"),
                         step_in_epoch=(ckpt.get("progress") or {}).get("step_in_epoch", 0),
                         true_filter=None if ti is None else classes[ti],
                         pred_filter=None if pi is None else classes[pi])


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


def grid_size(count: int, with_cam: bool, cols: int | None = None, scale: int = SCALE,
              side: int = 32) -> tuple[int, int]:
    """(width, height) of the whole PNG with its title band (``write_grid`` widens it for a long title)."""
    c, r = grid_shape(count, cols)
    tw, th = tile_size(with_cam, scale, side)
    return c * tw + (c + 1) * MARGIN, TITLE_H + r * th + (r + 1) * MARGIN


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def write_grid(result: Misclassified, path: str | os.PathLike, cols: int | None = None, *,
               user_path: bool = False) -> Path:
    """Draw the gallery as a PNG (white background, a title, black captions); returns the path.

    Written atomically (:func:`cifarctl.fsutil.write_atomic`, its folder made first); a file
    that cannot be written is one line naming it, exit 2 for a bad path the user gave
    (``user_path``: ``--out``), 1 otherwise."""
    path = draw_grid(result.images, result.cams, [caption_lines(m) for m in result.items], result.title_lines(),
                     path, cols, user_path=user_path, empty="no misclassified images\nmatch")
    result.png = path
    return path


def draw_grid(images: np.ndarray, cams: np.ndarray | None, captions: list[list[str]], title: list[str],
              path: str | os.PathLike, cols: int | None = None, *, user_path: bool = False,
              empty: str = "no images") -> Path:
    """A PNG of captioned tiles: each image (N, S, S, 3) upscaled (nearest) to about 128 px,
    with its Grad-CAM overlay beside it when ``cams`` (N, S, S) are given, and its caption
    lines (the second in red) under it; two ``title`` lines on top. Shared by
    ``misclassified`` and ``predict --gradcam``."""
    from PIL import Image, ImageDraw


    path = Path(path)
    with_cam = cams is not None
    count = len(captions)
    side = int(images.shape[1]) if count else 32
    scale = max(1, (32 * SCALE) // side)
    width, height = grid_size(max(count, 1), with_cam, cols, scale, side)
    font, title_font = _font(12), _font(14)
    width = max(width, 2 * MARGIN + max(int(title_font.getlength(t)) + 1 for t in title))
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN - 2), title[0], fill="black", font=title_font)
    draw.text((MARGIN, MARGIN + 16), title[1], fill=(80, 80, 80), font=title_font)
    c, _ = grid_shape(max(count, 1), cols)
    tw, th = tile_size(with_cam, scale, side)
    px = side * scale
    top = TITLE_H + MARGIN  # the first row of tiles
    if not count:
        draw.text((MARGIN, top), empty, fill="black", font=font)
    for k, lines in enumerate(captions):
        x0 = MARGIN + (k % c) * (tw + MARGIN)
        y0 = top + (k // c) * (th + MARGIN)
        img = images[k]
        canvas.paste(Image.fromarray(img).resize((px, px), Image.NEAREST), (x0, y0))
        if with_cam:
            blended = overlay(img, cams[k])
            canvas.paste(Image.fromarray(blended).resize((px, px), Image.NEAREST), (x0 + px + GAP, y0))
        for j, line in enumerate(lines):
            draw.text((x0, y0 + px + 2 + 13 * j), line, fill=(200, 0, 0) if j == 1 else "black", font=font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    write_atomic(path, buf.getbuffer(), parents=True, user_path=user_path)
    return path
