"""Every terminal chart, with plotext 6's figure API: accuracy, loss and learning rate by
epoch (``train``), the LR range test (``lr-find``) and one metric of several runs (``compare``).

plotext 6 has one figure object (``plotext.figure``); every chart starts from
:func:`_figure` (cleared, in :data:`THEME`, sized by the caller rather than by the
terminal plotext sees) and clears it after. The result is a string with ANSI colours
(``colorless=False``) for ``rich.text.Text.from_ansi``, or plain text. The plotext 6
workarounds live here too: its log scale misplaces vertical lines (:func:`lr_find_chart`
draws log10 on a linear axis), its legend covers the lines (every legend is drawn outside
the plot by rich: :func:`epoch_key`, :func:`lr_find_key`, the compare legend), and its
automatic ticks on a few epochs are fractions (:func:`epoch_ticks` gives whole epochs).
"""

from __future__ import annotations

import math

from rich.text import Text

from cifarctl.safetext import shown
from cifarctl.training.lr_suggest import LABELS, SUGGESTIONS

# One theme for every chart: no background fill, so a chart reads the same on a dark and
# on a light terminal (plotext's default paints a white canvas)
THEME = "simple"
# train/test in the epoch chart: a colour (256-colour code, read by plotext and rich alike)
# and a point marker each, so the two tell apart without colour too; the lr line's colour
SPLITS = {"train": (12, "•"), "test": (208, "×")}
LR_COLOR = 10
# lr-find: the colour of each suggestion's vertical line (names rich and plotext share)
SUGGESTION_COLORS = {"steepest": "red", "valley": "green", "min_div_10": "yellow"}
# compare: line colours and, without colours, markers
LINE_COLORS = (12, 9, 10, 13, 14, 11, 208, 141, 118, 219)
LINE_MARKERS = "•+xo#@%=~^"


def _figure():
    """plotext's figure, cleared, with no limit from the terminal size plotext reads
    itself (the caller sizes the chart for the console rich renders to)."""
    import plotext as plt

    plt.terminal.limit(False, False)
    f = plt.figure
    f.clear()
    return f


def epoch_ticks(lo: float, hi: float, most: int = 8) -> list[int]:
    """Whole-number ticks from ``lo`` to ``hi`` (epochs): at most ``most``, at multiples of
    1, 2, 5, 10, 20, 50, ... plus the first whole epoch when it is not too close to the next."""
    first, last = math.ceil(lo), math.floor(hi)
    if last <= first:
        return [first if first <= hi else last]
    step = next(m * 10 ** k for k in range(18) for m in (1, 2, 5) if (last - first) / (m * 10 ** k) <= most - 1)
    ticks = list(range(math.ceil(first / step) * step, last + 1, step))
    if not ticks or ticks[0] - first > step / 2:
        ticks.insert(0, first)
    return ticks


def _lr_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    if hi <= lo:
        return [lo], [f"{lo:.1e}"]
    values = [lo + (hi - lo) * i / 3 for i in range(4)]
    return values, [f"{v:.1e}" for v in values]


def lr_points(history: list[dict], trace: list[tuple[float, float]] | None = None) -> list[tuple[float, float]]:
    """The learning rate against epochs done: each epoch's last lr (history rows' ``lr``, at
    x = epoch) merged with ``trace``, the lrs seen during this run at x = epoch - 1 + step/steps."""
    pts = {float(h["epoch"]): float(h["lr"]) for h in history if h.get("lr") is not None}
    pts.update((float(x), float(v)) for x, v in trace or ())
    return sorted(pts.items())


def epoch_chart(history: list[dict], width: int = 100, height: int = 14, colorless: bool = False,
                lr: list[tuple[float, float]] | None = None, panels: int = 3) -> str:
    """Side-by-side panels by epoch: train/test accuracy (%), train/test loss and, with
    ``panels=3`` and an lr in the history (or ``lr`` points, see :func:`lr_points`), the
    learning rate. Whole-epoch ticks, train and test with their own markers, no legend
    inside (:func:`epoch_key` is the legend)."""
    import plotext as plt

    if not history:
        return ""
    epochs = [int(h["epoch"]) for h in history]
    lrs = lr if lr is not None else lr_points(history)
    show_lr = panels >= 3 and bool(lrs)
    f = _figure()
    f.subplots(1, 3 if show_lr else 2)
    f.theme(THEME)
    f.plot_size(max(40, width), max(8, height))
    lo, hi = min(epochs), max(epochs)
    most = max(2, min(8, width // (3 if show_lr else 2) // 6))  # tick labels a few columns apart
    for col, key, title in ((1, "acc", "accuracy %"), (2, "loss", "loss")):
        p = f.subplot(1, col)
        p.title(title)
        for split, (color, symbol) in SPLITS.items():
            values = [float(h[f"{split}_{key}"]) for h in history]
            line = p.signal(epochs, values, marker=plt.marker("braille", pixel=color))
            line.lines()
            p.draw(line)
            p.draw(p.signal(epochs, values, marker=plt.marker(symbol, pixel=color)))
        _epoch_axis(p, lo, hi, most)
    if show_lr:
        p = f.subplot(1, 3)
        p.title("learning rate")
        xs, ys = [x for x, _ in lrs], [v for _, v in lrs]
        line = p.signal(xs, ys, marker=plt.marker("braille", pixel=LR_COLOR))
        line.lines()
        p.draw(line)
        _epoch_axis(p, min(xs[0], lo), max(xs[-1], hi), most)
        p.ruler(1).ticks(*_lr_ticks(min(ys), max(ys)))
    text = f.build().string(colorless=colorless)
    f.clear()
    return text


def _epoch_axis(p, lo: float, hi: float, most: int) -> None:
    if hi - lo < 1:  # one epoch: a range around it, or plotext ticks fractions of it
        lo, hi = math.floor(lo) - 0.5, math.ceil(hi) + 0.5
        p.ruler(0).lim(lo, hi)
    p.ruler(0).ticks(epoch_ticks(lo, hi, most))


def epoch_key(lr: bool = True) -> str:
    """Rich markup: the epoch chart's legend, for outside the plot (a panel's subtitle)."""
    parts = [f"[color({c})]{m}[/] {split}" for split, (c, m) in SPLITS.items()]
    if lr:
        parts.append(f"[color({LR_COLOR})]⠤⠤[/] lr")
    return "  ".join(parts)


def lr_find_chart(result, width: int = 80, height: int = 18, colorless: bool = False) -> str:
    """Smoothed loss against lr (log x) with the suggestions as vertical lines.

    plotext 6.1's own log scale misplaces vertical lines and breaks with custom ticks
    (seen here), so the x values are log10(lr) on a linear axis with 1e-N tick labels.
    """
    import plotext as plt


    pts = [(math.log10(lr), v) for lr, v in zip(result.lr, result.smoothed_loss) if math.isfinite(v)]
    if len(pts) < 2:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    hi = max(ys)
    if ys[0] > 0:
        hi = min(hi, 2 * ys[0])  # a diverged tail would squash the rest
    f = _figure()
    f.theme(THEME)
    lo = min(min(ys), hi)
    for k in SUGGESTIONS:  # as signals: plotext's own vertical lines fill their cells white;
        # drawn first, so the curve stays on top where they cross
        v = result.suggestions.get(k)
        if v is not None:
            line = f.signal([math.log10(v)] * 2, [lo, hi], marker=plt.marker("│", pixel=SUGGESTION_COLORS[k]))
            line.lines()
            f.draw(line)
    s = f.signal(xs, [min(y, hi) for y in ys], marker=plt.marker("hd", pixel=LINE_COLORS[0]))
    s.lines()
    s.label("smoothed loss")
    f.draw(s)
    f.legend(active=False)  # it would cover the curve; `lr_find_key` goes below instead
    first, last = math.floor(min(xs)), math.ceil(max(xs))
    step = max(1, math.ceil((last - first) / 8))
    ticks = list(range(first, last + 1, step))
    f.ruler(0).ticks(ticks, [f"1e{t}" if t else "1" for t in ticks])
    f.label("learning rate", axis="x")
    f.title("LR range test: smoothed loss" + ("" if result.conclusive else " (inconclusive)"))
    f.plot_size(width, height)
    text = f.build().string(colorless=colorless)
    f.clear()
    return text


def lr_find_key(result, width: int = 80) -> str:
    """Rich markup naming the lr-find chart's vertical lines, in their colours: on one line
    when it fits ``width``, else one entry a line (never a label cut from its number)."""
    parts, plain = [], []
    for k in SUGGESTIONS:
        v = result.suggestions.get(k)
        if v is not None:
            star = " (recommended)" if k == result.recommended_by else ""
            parts.append(f"[{SUGGESTION_COLORS[k]}]│[/] {LABELS[k]} {v:.1e}{star}")
            plain.append(f"│ {LABELS[k]} {v:.1e}{star}")
    return ("   " if len("   ".join(plain)) <= width else "\n").join(parts)


def metric_chart(lines: list[tuple[str, list[int], list[float]]], metric: str, width: int,
                 colorless: bool) -> tuple[str, list]:
    """(chart text, legend entries as rich ``Text``): one line per ``(label, epochs, values)``.

    Without colours each line has its own marker (and the legend shows it).
    """
    import plotext as plt


    fig = _figure()
    fig.theme(THEME)
    fig.plot_size(width, 18)
    entries = []
    for i, (label, xs, ys) in enumerate(lines):
        color, symbol = LINE_COLORS[i % len(LINE_COLORS)], LINE_MARKERS[i % len(LINE_MARKERS)]
        sig = fig.signal(xs, ys, marker=symbol if colorless else plt.marker("hd", pixel=color))
        sig.lines()
        fig.draw(sig)
        entries.append(Text.assemble((symbol if colorless else "━━", "" if colorless else f"color({color})"),
                                     f" {shown(label)}"))
    lo, hi = min(min(xs) for _, xs, _ in lines), max(max(xs) for _, xs, _ in lines)
    fig.ruler("x").ticks(epoch_ticks(lo, hi))  # whole epochs only
    fig.title(f"{metric} per epoch")
    fig.label("epoch", "x")
    text = fig.build().string(colorless=colorless)
    fig.clear()
    return text, entries
