"""Images in the terminal: half blocks, two pixels per character cell.

Each cell is "▀" with the upper pixel as foreground and the lower as background, so a
32x32 image takes 32 columns by 16 rows. rich draws true colour only where
``COLORTERM=truecolor`` (or ``24bit``) says the terminal has it, which SSH and tmux often
do not pass on: on a 256-colour terminal the pixels go to the nearest of xterm's 240
colours (:func:`xterm256`: the 6x6x6 cube or the grey ramp, whichever is closer; rich's
own downgrade sends every pale colour to grey and never a saturated one) and
:func:`colour_hint` is the line to print once, before the images. Off a terminal,
callers should skip images altogether.
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
CUBE = np.array([0, 95, 135, 175, 215, 255])  # xterm's colour cube levels (colours 16-231)
GREYS = 8 + 10 * np.arange(24)  # xterm's grey ramp (colours 232-255)


def xterm256(rgb: np.ndarray) -> np.ndarray:
    """The nearest xterm colour number (16-255) of each RGB pixel of ``rgb`` (..., 3), by
    squared distance: the nearest cube colour (channel by channel) or the nearest grey."""
    c = np.asarray(rgb, dtype=np.int32)
    levels = np.abs(c[..., None] - CUBE).argmin(-1)
    cube_err = ((c - CUBE[levels]) ** 2).sum(-1)
    grey = np.clip(np.rint((c.mean(-1) - 8) / 10), 0, 23).astype(np.int32)
    grey_err = ((c - GREYS[grey][..., None]) ** 2).sum(-1)
    cube = 16 + 36 * levels[..., 0] + 6 * levels[..., 1] + levels[..., 2]
    return np.where(grey_err < cube_err, 232 + grey, cube)


def colour_mode(console) -> str:
    """``"256"`` on a 256-colour terminal (the pixels are quantised by :func:`xterm256`),
    else ``"truecolor"`` (rich downgrades to 16 colours itself where it must)."""
    return "256" if console.color_system == "256" else "truecolor"


def colour_hint(console) -> str | None:
    """The one line to print before images on a terminal without true colour, or None."""
    system = console.color_system
    if not console.is_terminal or system in (None, "truecolor"):
        return None
    colours = "256" if system == "256" else "16"
    return f"images in {colours} colours: set COLORTERM=truecolor if your terminal supports it"


def print_colour_hint(console) -> None:
    hint = colour_hint(console)
    if hint:
        console.print(Text(hint, style="dim"), soft_wrap=True)


def image_text(image: np.ndarray, scale: int = 1, colours: str = "truecolor") -> Text:
    """One RGB (H, W, 3) or grey (H, W) uint8 image as a rich Text, in true colour or
    (``colours="256"``) in xterm's 256 colours."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) or (H, W) image, got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if colours not in ("truecolor", "256"):
        raise ValueError(f"colours: truecolor or 256, not {colours!r}")
    if scale > 1:
        img = img.repeat(scale, axis=0).repeat(scale, axis=1)
    if colours == "256":
        img = xterm256(img)[..., None]  # one colour number a pixel
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
                colour = Color.from_rgb if colours == "truecolor" else Color.from_ansi
                fg = colour(*map(int, key[0]))
                bg = None if key[1] is None else colour(*map(int, key[1]))
                style = styles[key] = Style(color=fg, bgcolor=bg)
            text.append(UPPER_HALF, style)
    return text


def render_images(
    images: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    scale: int = 1,
    colours: str = "truecolor",
) -> RenderableType:
    """Images side by side (wrapping to the terminal width), each with its label below."""
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    cells = []
    for i, img in enumerate(images):
        pic = image_text(img, scale, colours)
        width = np.asarray(img).shape[1] * max(scale, 1)
        if labels is None:
            cells.append(pic)
            continue
        label = Text(str(labels[i]), no_wrap=True, overflow="ellipsis", justify="center")
        label.truncate(width, overflow="ellipsis", pad=True)
        cells.append(Group(pic, label))
    return Columns(cells, padding=(0, 1))
