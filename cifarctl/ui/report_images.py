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


# matplotlib's "Blues" (ColorBrewer, 9 steps), interpolated linearly from 0 % to 100 %
_BLUES = ((247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214),
          (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107))
CELL = 56          # confusion-matrix cell, pixels


def blues(share: float) -> tuple[int, int, int]:
    """The colour of ``share`` (0..100 %) on the Blues scale."""
    t = min(max(float(share), 0.0), 100.0) / 100 * (len(_BLUES) - 1)
    i = min(int(t), len(_BLUES) - 2)
    f = t - i
    return tuple(int(round(a + (b - a) * f)) for a, b in zip(_BLUES[i], _BLUES[i + 1]))


def _rotated_text(text: str, font, angle: float, fill="black"):
    """``text`` on a transparent image, turned ``angle`` degrees counter-clockwise."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(text)
    im = Image.new("RGBA", (right - left + 2, bottom - top + 2), (255, 255, 255, 0))
    ImageDraw.Draw(im).text((1 - left, 1 - top), text, fill=fill, font=font)
    return im.rotate(angle, expand=True, resample=Image.BICUBIC)


def confusion_png(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> Path:
    """The confusion matrix normalised by true class (rows sum to 100 %), every cell of at
    least 1 % labelled, a colour scale on the right. Drawn with Pillow (no matplotlib)."""
    from PIL import Image, ImageDraw

    m = np.asarray(matrix, dtype=np.float64)
    share = 100 * m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    font, small, big = _font(14), _font(12), _font(16)
    name_w = max(int(font.getlength(c)) for c in classes) + 10
    ticks = [_rotated_text(c, font, 45) for c in classes]
    tick_h = max(t.height for t in ticks)
    pad = 16
    x0 = pad + 24 + name_w                    # "true class", the names, then the grid
    y0 = pad + 36                              # the title, then the grid
    grid = n * CELL
    bar_x = x0 + grid + 28
    width = max(bar_x + 18 + 44 + 24 + pad, int(big.getlength(title)) + 2 * pad)
    height = y0 + grid + tick_h + 34 + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text(((x0 + x0 + grid) // 2, pad + 8), title, fill="black", font=big, anchor="mm")
    for i in range(n):
        for j in range(n):
            v = share[i, j]
            cx, cy = x0 + j * CELL, y0 + i * CELL
            draw.rectangle((cx, cy, cx + CELL - 1, cy + CELL - 1), fill=blues(v))
            if round(v) >= 1:
                draw.text((cx + CELL // 2, cy + CELL // 2), f"{v:.0f}", font=small, anchor="mm",
                          fill="white" if v > 50 else "black")
    draw.rectangle((x0 - 1, y0 - 1, x0 + grid, y0 + grid), outline=(60, 60, 60))
    for i, name in enumerate(classes):   # true classes down the left, predicted along the bottom
        draw.text((x0 - 8, y0 + i * CELL + CELL // 2), name, fill="black", font=font, anchor="rm")
        t = ticks[i]
        canvas.paste(t, (x0 + i * CELL + CELL // 2 - t.width + 6, y0 + grid + 6), t)
    draw.text(((x0 + x0 + grid) // 2, y0 + grid + tick_h + 20), "predicted class", fill="black", font=font,
              anchor="mm")
    label = _rotated_text("true class", font, 90)
    canvas.paste(label, (pad, y0 + grid // 2 - label.height // 2), label)
    for k in range(grid):                 # the colour scale: 100 % at the top
        draw.line((bar_x, y0 + k, bar_x + 18, y0 + k), fill=blues(100 * (1 - k / (grid - 1))))
    draw.rectangle((bar_x - 1, y0 - 1, bar_x + 19, y0 + grid), outline=(60, 60, 60))
    for v in range(0, 101, 20):
        y = y0 + round((grid - 1) * (1 - v / 100))
        draw.line((bar_x + 19, y, bar_x + 23, y), fill="black")
        draw.text((bar_x + 27, y), str(v), fill="black", font=small, anchor="lm")
    scale = _rotated_text("% of the true class", font, 90)
    canvas.paste(scale, (bar_x + 18 + 44, y0 + grid // 2 - scale.height // 2), scale)
    return _save_png(canvas, path)


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
