"""Terminal charts with plotext 6 (figure API): accuracy and loss by epoch.

plotext 6 has one figure object (``plotext.figure``); every chart clears it first. The
result is a string with ANSI colours (``colorless=False``) for ``rich.text.Text.from_ansi``,
or plain text.
"""

from __future__ import annotations


def epoch_chart(history: list[dict], width: int = 100, height: int = 14, colorless: bool = False) -> str:
    """Two side-by-side panels: train/test accuracy (%) and train/test loss by epoch."""
    import plotext as plt

    f = plt.figure
    f.clear()
    if not history:
        return ""
    epochs = [int(h["epoch"]) for h in history]
    f.subplots(1, 2)
    f.plot_size(max(40, width), max(8, height))
    for col, key, title in ((1, "acc", "accuracy %"), (2, "loss", "loss")):
        p = f.subplot(1, col)
        p.title(title)
        for split in ("train", "test"):
            values = [float(h[f"{split}_{key}"]) for h in history]
            s = p.signal(epochs, values)
            s.lines()
            s.label(split)
            p.draw(s)
    text = f.build().string(colorless=colorless)
    f.clear()
    return text
