"""The training dashboard laid out for the terminal it has (cifarctl.ui.train_view): one
status line below 100 columns, progress bars from 100, the chart only where it fits; and
the checked-in captures of it (tests/fixtures/captures, made by tests/captures.py)."""

from __future__ import annotations

import re

import pytest
from captures import CAPTURES, EPOCHS, FOLDER, STEPS, FakeClock, dashboard, drive, plain, render_screen, terminal

from cifarctl.ui.train_view import WIDE, TrainView

def bars(text: str) -> list[int]:
    """The widths of the progress bars: runs of bar glyphs (in colour, rich draws the rest
    of a bar in grey ━, so a bar is one run as wide as the whole bar)."""
    return [len(m) for m in re.findall(r"[━╸╺]{3,}", plain(text))]


def chart_shown(text: str) -> bool:
    return "by epoch" in text and "accuracy %" in text


def test_80x24_is_one_status_line_without_a_chart():
    text = dashboard(80, 24)
    lines = text.splitlines()
    assert lines == ["epoch 4/5  step 40/98  loss 0.812 acc 80.0%  elapsed 6m 59s  eta 3m 16s"]
    assert "…" not in text
    assert not chart_shown(text)
    colour = dashboard(80, 24, colour=True)
    assert "\x1b[" in colour
    assert "…" not in colour


def test_140x45_keeps_the_bars_and_shows_the_chart():
    text = dashboard(140, 45)
    assert "…" not in text
    assert chart_shown(text)
    assert "learning rate" in text
    epochs_row = next(ln for ln in text.splitlines() if ln.startswith("epochs "))
    batch_row = next(ln for ln in text.splitlines() if ln.startswith("epoch 4/5 "))
    assert epochs_row.endswith("0:06:58 eta 3m 16s")                  # elapsed and ETA whole
    assert batch_row.endswith("0:00:48 eta 1m 10s")
    assert [w >= 40 for w in bars(text)] == [True, True]  # two bars, wide (5 cells at 80 before)
    assert len(text.splitlines()) <= 45 // 2 + 2  # the chart takes half the height at most


@pytest.mark.parametrize("width", [WIDE, WIDE + 7])
def test_wide_layout_worst_case_is_not_cut(width):
    """Long numbers everywhere: 100 epochs of 1,563 steps, 12,345 img/s, hours of ETA."""
    text = dashboard(width, 30, epochs=100, steps=1563, stop_at=(3, 1500), step_seconds=9.0,
                     eval_seconds=60.0, images_per_s=12345.0)
    assert "…" not in text
    assert "12,345 img/s" in text
    assert "1500/1563" in text
    assert "test acc 66.9% (best 66.9%)" in text
    assert "11:35:54 eta 380h 16m" in text
    assert "3:45:00  eta 9m 27s" in text  # elapsed and ETA, whole
    assert all(w >= 10 for w in bars(text))
    assert len(bars(text)) == 2


@pytest.mark.parametrize("width", [99, 90, 80, 72, 60, 50, 40])
def test_status_line_below_100_columns_is_never_cut(width):
    text = dashboard(width, 24, epochs=100, steps=1563, stop_at=(3, 1500), step_seconds=9.0,
                     eval_seconds=60.0, images_per_s=12345.0)
    assert "…" not in text
    assert not bars(text)  # no progress bars
    assert all(len(ln) <= width for ln in text.splitlines())
    for part in ("epoch 3/100", "step 1500/1563", "loss 0.912 acc 77.5%", "elapsed 11h 35m", "eta 380h 16m"):
        assert part in text, (part, text)  # each whole, on one line
    assert len(text.splitlines()) == (1 if width >= 80 else 2 if width >= 50 else 3)
    if width >= 95:  # room for an extra: the lr
        assert "lr 6.7e-03" in text


def test_status_line_adds_what_fits():
    assert "test 74.4% (best 74.4%)" in dashboard(99, 24)  # the last test accuracy first
    line = dashboard(99, 24, epochs=5, steps=9, stop_at=(1, 4))  # before any test: lr and img/s
    assert line == "epoch 1/5  step 4/9  loss 1.974 acc 46.0%  lr 1.3e-02  107 img/s  elapsed 5s  eta 49s\n"


@pytest.mark.parametrize("size, shown, lr_panel", [
    ((80, 24), False, False),   # the terminal: no chart
    ((140, 27), False, False),  # wide but short: half the height is under 12 rows of plot
    ((60, 60), False, False),   # too narrow
    ((80, 40), True, False),    # narrow, tall: accuracy and loss
    ((100, 40), True, True),
    ((140, 45), True, True),
])
def test_chart_only_where_it_fits(size, shown, lr_panel):
    text = dashboard(*size)
    assert chart_shown(text) == shown
    assert ("learning rate" in text) == lr_panel
    assert len(text.splitlines()) <= size[1]
    if shown:
        chart_rows = sum(1 for ln in text.splitlines() if ln.startswith(("│", "╭", "╰")))
        assert 14 <= chart_rows <= size[1] // 2


def test_one_view_is_laid_out_again_for_a_new_size():
    """A resize: the same view drawn at 80x24, then at 140x45, then at 80x24 again."""
    clock = FakeClock()
    view = TrainView(terminal(140, 45), tty=True, clock=clock)
    try:
        drive(view, clock)
    finally:
        view.close()
    small, big = render_screen(view, 80, 24), render_screen(view, 140, 45)
    assert small == dashboard(80, 24)
    assert big == dashboard(140, 45)
    assert render_screen(view, 80, 24) == small


def test_before_the_first_step_the_eta_is_a_question_mark_not_an_ellipsis():
    clock = FakeClock()
    view = TrainView(terminal(80, 24), tty=True, clock=clock)
    try:
        view.handle({"type": "start", "epoch": 0, "epochs": 5, "steps": 98, "model": "s8_bn", "params": 1,
                     "device": "cpu", "train_images": 1, "test_images": 1, "history": [], "resumed_step": 0})
    finally:
        view.close()
    assert render_screen(view, 80, 24) == "epoch 1/5  step 0/98  elapsed 0s  eta ?\n"
    wide = render_screen(view, 140, 45)
    assert "…" not in wide
    assert wide.count("eta ?") == 2


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_checked_in_captures_are_what_the_code_renders(name):
    """The captures under tests/fixtures/captures are evidence: they must match the code
    (after a deliberate change, rewrite them with `python tests/captures.py`)."""
    stored = (FOLDER / name).read_text(encoding="utf-8")
    assert CAPTURES[name]() == stored
    assert "…" not in stored
    assert "\x1b" not in stored


def test_the_lr_range_test_bar_appears_with_the_range_test_not_before(monkeypatch):
    """``train`` holds the bar's context while the data loads (and for a numeric max_lr):
    nothing is drawn until the range test takes its first step."""
    import io
    import sys

    from captures import FakeClock, terminal

    from cifarctl.ui.train_view import TrainView

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    view = TrainView(terminal(80, 24), tty=True, clock=FakeClock())
    with view.lr_find_progress() as step:
        assert "LR range test" not in err.getvalue()
        assert "None" not in err.getvalue()
        step(1, 100, 1e-5, 2.3)
        step(2, 100, 2e-5, 2.2)
    assert "LR range test for max_lr: auto" in err.getvalue()
    assert "0/None" not in err.getvalue()


@pytest.mark.parametrize("width,height", [(80, 40), (140, 45)])
def test_the_chart_is_left_on_the_screen_once_when_a_refresh_races_a_line(monkeypatch, width, height):
    """rich's refresh thread may draw the screen while an epoch's line is being printed
    above it (the chart is slow to build): the terminal must still end with one chart."""
    import threading

    from captures import scrollback

    from cifarctl.ui import train_view

    real = train_view._Screen.__rich_console__
    raced: list[threading.Thread] = []

    def racing(self, console, options):
        if self.view.history and not raced and threading.current_thread() is threading.main_thread():
            t = threading.Thread(target=self.view.live.refresh)  # what rich's refresh thread does
            raced.append(t)
            t.start()
            t.join(0.5)
        yield from real(self, console, options)

    monkeypatch.setattr(train_view._Screen, "__rich_console__", racing)
    con, clock = terminal(width, height), FakeClock()
    view = TrainView(con, tty=True, clock=clock)
    drive(view, clock, stop_at=(EPOCHS, STEPS))
    view.finish({"best_test_acc": 81.7, "best_epoch": 5, "final_test_acc": 81.7, "epochs_done": 5,
                 "total_seconds": 618.0, "target": {"passed": True, "checks": []}})
    for t in raced:
        t.join()
    screen = scrollback(con.file.getvalue())
    assert raced, "\n".join(screen)
    assert sum("by epoch" in ln for ln in screen) == 1, "\n".join(screen)
    assert screen.index(next(ln for ln in screen if "by epoch" in ln)) > max(
        i for i, ln in enumerate(screen) if ln.startswith("epoch 5/5  train"))
