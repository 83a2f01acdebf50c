"""The ETA of the training view and of lr-find, from completed steps (cifarctl.ui.eta):
it shows when a step takes minutes, where rich's 30-second speed window shows -:--:--."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cifarctl.ui.eta import Eta, fmt_duration
from cifarctl.ui.sweep_progress import SweepProgress
from cifarctl.ui.train_view import TrainView


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_fmt_duration():
    assert [fmt_duration(s) for s in (0, 42.4, 185, 3720, None)] == ["0s", "42s", "3m 05s", "1h 02m", "?"]


def test_eta_from_completed_units():
    clock = FakeClock()
    eta = Eta(10, clock=clock)
    assert eta.remaining() is None
    assert eta.text() == "eta ?"
    eta.update(1)               # the reference: start-up and the first step's warm-up excluded
    clock.t += 90
    eta.update(2)
    assert eta.seconds_per_unit() == 90
    assert eta.remaining() == 8 * 90
    assert eta.text() == "eta 12m 00s"
    clock.t += 30               # the same work, later (an evaluation): the rate includes it
    eta.update(2)
    assert eta.remaining() == pytest.approx(8 * 120)
    eta.update(0)               # the count went back (a new epoch's Eta would): start over
    assert eta.remaining() is None


def _task(view: TrainView, task_id):
    return next(t for t in view.progress.tasks if t.id == task_id)


def test_train_view_overall_eta_with_minute_long_steps():
    """CPU-like: 4 steps of 2 minutes per epoch, 3 epochs. The overall and the epoch ETA
    show from the second step on (rich's own would stay at -:--:--)."""
    clock = FakeClock()
    console = Console(file=io.StringIO(), force_terminal=True, width=160, height=50)
    view = TrainView(console, tty=True, chart=False, clock=clock)
    start = {"type": "start", "epoch": 0, "epochs": 3, "steps": 4, "model": "s8_bn", "params": 43266,
             "device": "cpu", "train_images": 512, "test_images": 100, "history": [], "resumed_step": 0}

    def step(epoch: int, i: int) -> None:
        view.handle({"type": "step", "epoch": epoch, "epochs": 3, "step": i, "steps": 4, "loss": 2.0,
                     "acc": 20.0, "lr": 0.01, "images_per_s": 1.0})

    try:
        view.handle(start)
        assert _task(view, view.epoch_task).fields["eta"] == "eta ?"
        step(1, 1)
        clock.t += 120
        step(1, 2)
        overall, epoch = _task(view, view.epoch_task), _task(view, view.batch_task)
        assert overall.fields["eta"] == "eta 20m 00s"   # 10 steps left x 2 min
        assert epoch.fields["eta"] == "eta 4m 00s"      # 2 steps left in this epoch
        assert overall.time_remaining is None           # rich's 30-second window: nothing
        clock.t += 240
        step(1, 4)
        clock.t += 60  # the evaluation
        view.handle({"type": "epoch", "epoch": 1, "epochs": 3, "best": True, "train_loss": 2.0,
                     "train_acc": 20.0, "test_loss": 2.0, "test_acc": 25.0, "lr": 0.01, "seconds": 540.0,
                     "images_per_s": 1.0})
        # 3 steps took 420 s including the evaluation: 140 s a step, 8 steps to go
        assert _task(view, view.epoch_task).fields["eta"] == "eta 18m 40s"
        assert _task(view, view.batch_task).fields["eta"] == "eta ?"
        rendered = Console(file=io.StringIO(), width=160)
        rendered.print(view.progress)
        assert "eta 18m 40s" in rendered.file.getvalue()
    finally:
        view.close()


def test_sweep_progress_off_a_terminal():
    clock = FakeClock()
    out = io.StringIO()
    console = Console(file=out, width=100)  # not a terminal
    with SweepProgress(console, 20, clock=clock) as progress:
        for i in range(1, 21):
            clock.t += 3.0
            progress(i, 20, 1e-7 * 10 ** (i / 2.5), 2.3)
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()
    assert "sweep: 3 s/step after 3 steps: about 1m 00s for all 20 (less if the loss diverges first)" in lines
    ticks = [ln for ln in lines if ln.startswith("sweep ") and "/20 (" in ln]
    assert len(ticks) == 10
    assert ticks[0].startswith("sweep 2/20 (10%)")
    assert ticks[-1].startswith("sweep 20/20 (100%)")
    assert "about 54s left" in ticks[0]
