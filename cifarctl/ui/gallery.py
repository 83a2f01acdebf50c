"""What ``cifarctl misclassified`` shows: the wrongest predictions as half-block images in the
terminal (with the Grad-CAM overlay beside each), or one plain line each off a terminal."""

from __future__ import annotations

import numpy as np
from rich.columns import Columns
from rich.console import Console, Group
from rich.text import Text

from cifarctl.analysis.gradcam import overlay
from cifarctl.ui.images import colour_mode, image_text, print_colour_hint
from cifarctl.ui.render import print_line


def render_gallery(result, scale: int = 1, colours: str = "truecolor"):
    """The gallery as a rich renderable: half-block images (with the Grad-CAM overlay
    beside each), captioned "true -> pred NN%", in ``colours`` (see ``ui.images``)."""
    cells = []
    for k, m in enumerate(result.items):
        img = result.images[k]
        if result.cams is not None:
            img = np.concatenate([img, np.full((img.shape[0], 1, 3), 0, np.uint8), overlay(img, result.cams[k])], axis=1)
        width = img.shape[1] * scale
        cap = Text(f"{m.true}→{m.pred}", no_wrap=True, overflow="ellipsis", justify="center")
        cap.truncate(width, overflow="ellipsis", pad=True)
        conf = Text(f"{100 * m.confidence:.0f}%", justify="center", style="dim")
        conf.truncate(width, pad=True)
        cells.append(Group(image_text(img, scale, colours), cap, conf))
    return Columns(cells, padding=(0, 1))


def show_misclassified(console: Console, result, png, true: str | None = None, pred: str | None = None) -> None:
    """The header (wrong of total, accuracy, filters, Grad-CAM layer), the gallery on a
    terminal or one line per image off one, and where the PNG went."""
    filters = ", ".join(f for f in (f"true {true}" if true else "", f"pred {pred}" if pred else "") if f)
    epoch = f" ({result.epoch_label})" if result.epoch_label else ""
    chosen = f"{result.wrong:,} of them {filters}" if filters else f"all {result.wrong:,} of them"
    print_line(console, f"{result.checkpoint}{epoch}: {result.total_wrong:,} of {result.total:,} test images "
               f"wrong ({result.accuracy:.2f}% accuracy); {chosen}, showing {len(result.items)} by {result.sort}"
               + (f"; Grad-CAM on {result.layer}" if result.layer else ""))
    if console.is_terminal:
        if result.items:

            print_colour_hint(console)
            console.print(render_gallery(result, colours=colour_mode(console)))
    else:
        for m in result.items:
            print(f"{m.index:6d}  true {m.true:<10}  pred {m.pred:<10}  {100 * m.confidence:6.2f}%  "
                  f"loss {m.loss:.3f}")
    print_line(console, f"wrote {png}")
