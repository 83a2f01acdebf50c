"""Images in the terminal: true-colour half blocks, two pixels per character cell.

Each cell is "▀" with the upper pixel as foreground and the lower as background, so a
32x32 image takes 32 columns by 16 rows. Terminals without true colour get rich's
nearest-colour downgrade; off a terminal, callers should skip images altogether.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.color import Color
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text

UPPER_HALF = "\u2580"  # ▀


def image_text(image: np.ndarray, scale: int = 1) -> Text:
    """One RGB (H, W, 3) or grey (H, W) uint8 image as a rich Text."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) or (H, W) image, got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if scale > 1:
        img = img.repeat(scale, axis=0).repeat(scale, axis=1)
    styles: dict[tuple, Style] = {}
    text = Text(no_wrap=True, overflow="crop")
    h = img.shape[0]
    for r in range(0, h, 2):
        if r:
            text.append("\n")
        upper = img[r]
        lower = img[r + 1] if r + 1 < h else None
        for c in range(img.shape[1]):
            key = (tuple(upper[c]), None if lower is None else tuple(lower[c]))
            style = styles.get(key)
            if style is None:
                fg = Color.from_rgb(*map(int, key[0]))
                bg = None if key[1] is None else Color.from_rgb(*map(int, key[1]))
                style = styles[key] = Style(color=fg, bgcolor=bg)
            text.append(UPPER_HALF, style)
    return text


def render_images(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    scale: int = 1,
) -> RenderableType:
    """Images side by side (wrapping to the terminal width), each with its label below."""
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    cells = []
    for i, img in enumerate(images):
        pic = image_text(img, scale)
        width = np.asarray(img).shape[1] * max(scale, 1)
        if labels is None:
            cells.append(pic)
            continue
        label = Text(str(labels[i]), no_wrap=True, overflow="ellipsis", justify="center")
        label.truncate(width, overflow="ellipsis", pad=True)
        cells.append(Group(pic, label))
    return Columns(cells, padding=(0, 1))
