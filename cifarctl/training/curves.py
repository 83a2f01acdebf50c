"""curves.png: a run's loss, accuracy and learning rate by epoch, drawn with matplotlib.

Drawn by the training run (:mod:`cifarctl.training.run`, off its loop) and by the report;
the run folders' own module (:mod:`cifarctl.runs`) draws nothing.
"""

from __future__ import annotations

import io
from pathlib import Path

from cifarctl.fsutil import write_atomic
from cifarctl.safetext import shown

CURVES_SIZE = (1500, 440)  # curves.png in pixels: three panels side by side


def write_curves(path: Path, history: list[dict], title: str | None = None) -> None:
    """curves.png: :func:`curves_figure` as a PNG, written atomically."""
    buf = io.BytesIO()
    curves_figure(history, title).savefig(buf, format="png")
    write_atomic(path, buf.getbuffer())


def curves_figure(history: list[dict], title: str | None = None):
    """Loss, accuracy and learning rate by epoch, titled with the run's name (a matplotlib
    Figure on the Agg canvas, no pyplot state). The lr is each epoch's last (metrics.jsonl's ``lr``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(CURVES_SIZE[0] / 100, CURVES_SIZE[1] / 100), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy (%)")):
        for split, style in (("train", "-o"), ("test", "-s")):
            ax.plot(epochs, [h[f"{split}_{key}"] for h in history], style, label=split, markersize=3)
        ax.set_title(label)
        ax.legend()
    lr = [(h["epoch"], h["lr"]) for h in history if h.get("lr") is not None]
    ax = axes[2]
    ax.set_title("learning rate (end of epoch)")
    if lr:
        ax.plot([e for e, _ in lr], [v for _, v in lr], "-o", color="tab:green", markersize=3)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(set(epochs)) == 1:  # one epoch: the locator would tick fractions around it
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
            ax.set_xticks(epochs[:1])
        ax.grid(alpha=0.3)
    if not lr:
        axes[2].text(0.5, 0.5, "no lr recorded", ha="center", va="center", transform=axes[2].transAxes)
        axes[2].set_xticks([])
        axes[2].set_yticks([])
    if title:

        fig.suptitle(shown(title))  # a run folder's name: control characters shown, not drawn
    fig.tight_layout()
    return fig
