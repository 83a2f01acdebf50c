"""The pictures of a report: sample grids (before and after augmentation), a normalised
confusion matrix and an overlay of several runs' curves. Each is written atomically and
sized to read at GitHub's ~900-pixel content width."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from cifarctl.fsutil import write_atomic

SCALE = 3          # sample tiles: 32 px -> 96 px (nearest)
LABEL_W = 110      # the class-name column of a sample grid
GAP = 4


def _font(size: int = 14):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _save_png(image, path: Path) -> Path:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_atomic(path, buf.getbuffer())
    return path


def sample_grid(images: np.ndarray, labels: list[int], classes: list[str], path: Path, title: str) -> Path:
    """One row per class (its name on the left), that class's images along it."""
    from PIL import Image, ImageDraw

    rows = [c for c in range(len(classes)) if c in set(labels)]
    per_row = max(labels.count(c) for c in rows) if rows else 1
    px = 32 * SCALE
    head = 28
    width = LABEL_W + per_row * (px + GAP) + GAP
    height = head + len(rows) * (px + GAP) + GAP
    canvas = Image.new("RGB", (width, max(height, head + px)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP, 6), title, fill="black", font=_font(15))
    for r, c in enumerate(rows):
        y0 = head + r * (px + GAP)
        draw.text((GAP, y0 + px // 2 - 8), classes[c], fill="black", font=_font(14))
        for k, i in enumerate(j for j, lab in enumerate(labels) if lab == c):
            tile = Image.fromarray(images[i]).resize((px, px), Image.NEAREST)
            canvas.paste(tile, (LABEL_W + k * (px + GAP), y0))
    return _save_png(canvas, path)


def _figure(width_px: int, height_px: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_fig(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getbuffer())
    return path


def confusion_png(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> Path:
    """The confusion matrix normalised by true class (rows sum to 100 %), every cell labelled."""
    m = np.asarray(matrix, dtype=np.float64)
    share = 100 * m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig = _figure(820, 760)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    n = len(classes)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(n):
        for j in range(n):
            v = share[i, j]
            ax.text(j, i, f"{v:.0f}" if v >= 0.5 else "", ha="center", va="center", fontsize=8,
                    color="white" if v > 50 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the true class")
    ax.set_title(title)
    fig.tight_layout()
    return _save_fig(fig, path)


METRIC_LABELS = {"test_acc": "test accuracy (%)", "train_acc": "train accuracy (%)", "test_loss": "test loss",
                 "train_loss": "train loss", "lr": "learning rate"}


def overlay_png(panels: list[tuple[str, list[tuple[str, list, list]]]], path: Path, title: str) -> Path:
    """Side-by-side panels, each ``(metric, [(label, epochs, values), ...])``, one line per
    run or group, a shared legend under them."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(1400, 470)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles = []
    for ax, (metric, lines) in zip(axes, panels):
        for k, (label, xs, ys) in enumerate(lines):
            (h,) = ax.plot(xs, ys, marker="os^vDP*X"[k % 8], markersize=3, label=label)
            if ax is axes[0]:
                handles.append(h)
        ax.set_title(METRIC_LABELS.get(metric, metric))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(handles) - 1) // 4), 1, 1))
    return _save_fig(fig, path)
