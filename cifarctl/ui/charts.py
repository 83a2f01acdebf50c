"""Every terminal chart, with plotext 6's figure API: accuracy/loss by epoch (``train``), the
LR range test (``lr-find``) and one metric of several runs (``compare``).

plotext 6 has one figure object (``plotext.figure``); every chart clears it first and
after. The result is a string with ANSI colours (``colorless=False``) for
``rich.text.Text.from_ansi``, or plain text. The plotext 6 workarounds live here too:
its log scale misplaces vertical lines (:func:`lr_find_chart` draws log10 on a linear
axis), and its legend covers the lines (the legends are drawn below, by rich).
"""

from __future__ import annotations

import math

# lr-find: the colour of each suggestion's vertical line (names rich and plotext share)
SUGGESTION_COLORS = {"steepest": "red", "valley": "green", "min_div_10": "yellow"}
# compare: line colours (256-colour codes, read by plotext and rich alike) and, without colours, markers
LINE_COLORS = (12, 9, 10, 13, 14, 11, 208, 141, 118, 219)
LINE_MARKERS = "•+xo#@%=~^"


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


def lr_find_chart(result, width: int = 80, height: int = 18, colorless: bool = False) -> str:
    """Smoothed loss against lr (log x) with the suggestions as vertical lines.

    plotext 6.1's own log scale misplaces vertical lines and breaks with custom ticks
    (seen here), so the x values are log10(lr) on a linear axis with 1e-N tick labels.
    """
    import plotext as plt

    from cifarctl.training.lrfind import SUGGESTIONS

    pts = [(math.log10(lr), v) for lr, v in zip(result.lr, result.smoothed_loss) if math.isfinite(v)]
    if len(pts) < 2:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    hi = max(ys)
    if ys[0] > 0:
        hi = min(hi, 2 * ys[0])  # a diverged tail would squash the rest
    f = plt.figure
    f.clear()
    s = f.signal(xs, [min(y, hi) for y in ys])
    s.lines()
    s.label("smoothed loss")
    f.draw(s)
    for k in SUGGESTIONS:
        v = result.suggestions.get(k)
        if v is not None:
            f.line(math.log10(v), orientation="v", pixel=SUGGESTION_COLORS[k])
    f.legend(active=False)  # it would cover the curve; `lr_find_key` goes below instead
    first, last = math.floor(min(xs)), math.ceil(max(xs))
    step = max(1, math.ceil((last - first) / 8))
    ticks = list(range(first, last + 1, step))
    f.ruler(0).ticks(ticks, [f"1e{t}" if t else "1" for t in ticks])
    f.label("learning rate", axis="x")
    f.title("LR range test: smoothed loss" + ("" if result.conclusive else " (inconclusive)"))
    f.plot_size(width, height)
    return f.build().string(colorless=colorless)


def lr_find_key(result) -> str:
    """Rich markup naming the lr-find chart's vertical lines, in their colours."""
    from cifarctl.training.lrfind import LABELS, SUGGESTIONS

    parts = []
    for k in SUGGESTIONS:
        v = result.suggestions.get(k)
        if v is not None:
            star = " (recommended)" if k == result.recommended_by else ""
            parts.append(f"[{SUGGESTION_COLORS[k]}]│[/] {LABELS[k]} {v:.1e}{star}")
    return "   ".join(parts)


def metric_chart(lines: list[tuple[str, list[int], list[float]]], metric: str, width: int,
                 colorless: bool) -> tuple[str, list]:
    """(chart text, legend entries as rich ``Text``): one line per ``(label, epochs, values)``.

    Without colours each line has its own marker (and the legend shows it).
    """
    import plotext as plt
    from rich.text import Text

    fig = plt.figure
    fig.clear()
    fig.theme("simple")  # no background fill: readable on dark and light terminals
    fig.plot_size(width, 18)
    entries = []
    for i, (label, xs, ys) in enumerate(lines):
        color, symbol = LINE_COLORS[i % len(LINE_COLORS)], LINE_MARKERS[i % len(LINE_MARKERS)]
        sig = fig.signal(xs, ys, marker=symbol if colorless else plt.marker("hd", pixel=color))
        sig.lines()
        fig.draw(sig)
        entries.append(Text.assemble((symbol if colorless else "━━", "" if colorless else f"color({color})"),
                                     f" {label}"))
    lo, hi = min(min(xs) for _, xs, _ in lines), max(max(xs) for _, xs, _ in lines)
    fig.ruler("x").ticks(list(range(lo, hi + 1, max(1, -(-(hi - lo) // 8)))))  # whole epochs only
    fig.title(f"{metric} per epoch")
    fig.label("epoch", "x")
    text = fig.build().string(colorless=colorless)
    fig.clear()
    return text, entries
