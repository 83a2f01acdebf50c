"""The terminal charts (cifarctl.ui.charts) and curves.png (cifarctl.training.curves.write_curves):
whole-epoch ticks, train and test told apart without colour, legends outside the plot,
one theme for every chart, and a learning-rate panel in both."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from captures import epoch_metrics, one_cycle, plain

from cifarctl.ui import charts
from cifarctl.ui.charts import SPLITS, THEME, epoch_chart, epoch_key, epoch_ticks, lr_points


def history(n: int, lr: bool = True) -> list[dict]:
    return [{"epoch": e, **epoch_metrics(e), **({"lr": one_cycle(e, n)} if lr else {})} for e in range(1, n + 1)]


def x_labels(chart: str) -> list[str]:
    """The tick labels under the x axes: the words of the last line."""
    return plain(chart).splitlines()[-1].split()


def plot_rows(chart: str) -> list[str]:
    """The rows inside the plot frames (between ┌ and └)."""
    rows = plain(chart).splitlines()
    top = next(i for i, r in enumerate(rows) if "┌" in r)
    bottom = next(i for i, r in enumerate(rows) if "└" in r)
    return rows[top + 1:bottom]


@pytest.mark.parametrize("lo, hi, most, expected", [
    (1, 1, 8, [1]), (1, 3, 8, [1, 2, 3]), (1, 12, 8, [2, 4, 6, 8, 10, 12]), (1, 30, 8, [1, 5, 10, 15, 20, 25, 30]),
    (1, 40, 4, [1, 20, 40]), (0.05, 12, 8, [2, 4, 6, 8, 10, 12]), (3, 4, 8, [3, 4]), (0.5, 1.5, 8, [1]),
])
def test_epoch_ticks_are_whole_epochs(lo, hi, most, expected):
    assert epoch_ticks(lo, hi, most) == expected


@pytest.mark.parametrize("n, width", [(1, 100), (3, 136), (7, 136), (12, 96), (30, 76), (200, 136)])
def test_epoch_chart_x_axis_has_whole_epochs_only(n, width):
    chart = epoch_chart(history(n), width=width, height=14, colorless=True)
    labels = x_labels(chart)
    assert labels, labels
    assert all(re.fullmatch(r"\d+", t) for t in labels), labels
    assert {int(t) for t in labels} <= set(range(0, n + 1))
    if n == 3:
        assert labels == ["1", "2", "3"] * 3  # accuracy, loss, lr


def test_train_and_test_have_their_own_markers():
    chart = epoch_chart(history(5), width=136, height=14, colorless=True)
    inside = "\n".join(plot_rows(chart))
    (train_color, train_mark), (test_color, test_mark) = SPLITS["train"], SPLITS["test"]
    assert train_mark != test_mark
    assert inside.count(train_mark) >= 8
    assert inside.count(test_mark) >= 8  # 5 epochs x 2 panels, a few overlap
    coloured = epoch_chart(history(5), width=136, height=14)
    assert f"\x1b[38;5;{train_color}m{train_mark}" in coloured
    assert f"\x1b[38;5;{test_color}m{test_mark}" in coloured
    assert train_color != test_color


def test_no_legend_inside_the_plot():
    chart = epoch_chart(history(5), width=136, height=14, colorless=True)
    assert "train" not in chart
    assert "test" not in chart  # plotext's legend box would name them
    key = epoch_key()
    for split, (color, mark) in SPLITS.items():
        assert f"[color({color})]{mark}[/] {split}" in key
    assert "lr" in key
    assert "lr" not in epoch_key(lr=False)


def test_lr_panel():
    h = history(6)
    chart = epoch_chart(h, width=136, height=14, colorless=True)
    assert "learning rate" in chart
    lr_labels = re.findall(r"(\d\.\de-\d\d)┤", chart)
    assert lr_labels[0] == f"{max(x['lr'] for x in h):.1e}"
    assert lr_labels[-1] == f"{min(x['lr'] for x in h):.1e}"
    assert "learning rate" not in epoch_chart(h, width=136, height=14, colorless=True, panels=2)
    assert "learning rate" not in epoch_chart(history(6, lr=False), width=136, height=14, colorless=True)


def test_lr_points_merge_the_epochs_and_the_steps_seen():
    h = [{"epoch": 1, "lr": 0.1}, {"epoch": 2, "lr": 0.2}, {"epoch": 3}]
    assert lr_points(h) == [(1.0, 0.1), (2.0, 0.2)]
    assert lr_points(h, [(1.5, 0.15), (2.0, 0.25)]) == [(1.0, 0.1), (1.5, 0.15), (2.0, 0.25)]


def test_every_chart_uses_one_theme(monkeypatch):
    """The train, lr-find and compare charts all ask plotext for THEME, which paints no
    background: one look on dark and light terminals (plotext's default is a white canvas)."""
    import plotext as plt

    from cifarctl.training.lrfind import analyse

    used = []
    theme = plt.figure.theme
    monkeypatch.setattr(plt.figure, "theme", lambda name="default": (used.append(name), theme(name))[1])
    lrs = list(np.geomspace(1e-6, 1, 60))
    loss = [2.3 - 1 / (1 + math.exp(-(math.log10(v) + 3) * 3)) for v in lrs]
    result = analyse(lrs, loss, num_iter=60, start_lr=1e-6, end_lr=1)
    drawn = {
        "epoch": epoch_chart(history(4), width=120, height=14),
        "lr-find": charts.lr_find_chart(result, width=80, height=16),
        "compare": charts.metric_chart([("a", [1, 2, 3], [50.0, 60.0, 65.0]), ("b", [1, 2], [40.0, 55.0])],
                                       "test_acc", 80, False)[0],
    }
    assert used == [THEME] * 3
    for name, text in drawn.items():
        assert "\x1b[38;5;" in text, name           # coloured lines
        assert not re.search(r"\x1b\[(?:[0-9;]*;)?48;", text), name  # and no background anywhere
    white = plt.figure
    white.clear()
    white.plot_size(40, 10)
    white.draw(white.signal([1, 2], [1, 2]))
    assert "48;5;15" in white.build().string()  # what the theme prevents: plotext's white canvas
    white.clear()


def test_curves_figure_has_the_run_name_and_an_lr_panel():
    from cifarctl.training.curves import curves_figure

    h = history(8)
    fig = curves_figure(h, title="s8_bn-20261201-101500")
    assert fig._suptitle is not None
    assert fig._suptitle.get_text() == "s8_bn-20261201-101500"
    loss, acc, lr = fig.axes
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy (%)", "learning rate (end of epoch)"]
    assert [ln.get_label() for ln in loss.lines] == ["train", "test"]
    assert list(lr.lines[0].get_ydata()) == [x["lr"] for x in h]
    assert all(float(t).is_integer() for a in fig.axes for t in a.get_xticks())  # whole epochs
    one = curves_figure(h[:1])
    assert one._suptitle is None
    assert [list(a.get_xticks()) for a in one.axes] == [[1], [1], [1]]
    old = curves_figure(history(3, lr=False))  # metrics without lr: the panel says so
    assert not old.axes[2].lines
    assert old.axes[2].texts[0].get_text() == "no lr recorded"


def test_curves_png_read_back(tmp_path):
    from PIL import Image

    from cifarctl.training.curves import CURVES_SIZE, write_curves

    write_curves(tmp_path / "curves.png", history(8), title="s8_bn-20261201-101500")
    img = Image.open(tmp_path / "curves.png")
    assert img.size == CURVES_SIZE
    assert img.format == "PNG"
    grey = np.asarray(img.convert("L"))
    # three panels: each plot frame is two dark vertical lines across the middle row
    row = grey[CURVES_SIZE[1] // 2]
    assert len(np.flatnonzero((row[1:] < 60) & (row[:-1] >= 60))) == 6
    # the lr line (matplotlib's tab:green) is drawn in the right-hand third, and only there
    rgb = np.asarray(img.convert("RGB")).astype(int)
    green = (rgb[..., 1] > 140) & (rgb[..., 0] < 80) & (rgb[..., 2] < 80)
    cols = np.flatnonzero(green.any(0))
    assert len(cols) > 100
    assert cols.min() > 2 * CURVES_SIZE[0] // 3
    # the title: the top band holds the middle panel's title, and with the run name far more ink
    write_curves(tmp_path / "untitled.png", history(8))
    untitled = np.asarray(Image.open(tmp_path / "untitled.png").convert("L"))
    assert (grey[:25, 600:900] < 128).sum() > 2 * (untitled[:25, 600:900] < 128).sum() > 0


def test_a_run_titles_its_curves_with_the_run_folder(tmp_path, monkeypatch):
    from cifarctl.training import curves
    from cifarctl.training.run import run_training

    seen = []
    monkeypatch.setattr(curves, "write_curves", lambda path, hist, title=None: seen.append((path.name, title)))
    run_training("s8_bn", overrides=["data.source=synthetic:128:32", "data.batch_size=64", "epochs=1"],
                 runs_dir=tmp_path, name="s8_bn-20261201-101500", device="cpu", view=None)
    assert seen
    assert set(seen) == {("curves.png", "s8_bn-20261201-101500")}