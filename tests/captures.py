"""The checked-in captures of the training dashboard and its live chart, and what makes them.

A fixed run of engine events (5 epochs of 98 steps, two minutes an epoch, a one-cycle lr,
stopped 40 steps into epoch 4) on a fake clock, fed to ``TrainView`` on a terminal of a
given size; the screen it would show is rendered in 256 colours and the escape codes are
stripped. ``tests/fixtures/captures/`` holds the results; ``test_dashboard.py`` checks that
the code still renders exactly them. After a deliberate change to the layout, rewrite them:

    PYTHONPATH=. python tests/captures.py
"""

from __future__ import annotations

import io
import math
import re
import sys
from pathlib import Path

from rich.console import Console

FOLDER = Path(__file__).resolve().parent / "fixtures" / "captures"
EPOCHS, STEPS = 5, 98
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def one_cycle(x: float, epochs: float = EPOCHS, top: float = 0.05) -> float:
    """A one-cycle lr at ``x`` epochs done: up for the first 30%, then cosine down."""
    up = 0.3 * epochs
    if x <= up:
        return top / 25 + (top - top / 25) * x / up
    return top / 250 + (top - top / 250) * (1 + math.cos(math.pi * (x - up) / (epochs - up))) / 2


def epoch_metrics(e: int) -> dict:
    return {"train_loss": 2.0 * math.exp(-e / 2.5) + 0.3, "train_acc": 90 - 55 * math.exp(-e / 2.0),
            "test_loss": 2.0 * math.exp(-e / 2.5) + 0.45, "test_acc": 86 - 52 * math.exp(-e / 2.0)}


def drive(view, clock: FakeClock, *, epochs: int = EPOCHS, steps: int = STEPS, stop_at: tuple = (4, 40),
          step_seconds: float = 1.2, eval_seconds: float = 6.0, images_per_s: float = 106.7) -> None:
    """Feed ``view`` the events of the run up to step ``stop_at[1]`` of epoch ``stop_at[0]``."""
    view.handle({"type": "start", "epoch": 0, "epochs": epochs, "steps": steps, "model": "s8_bn",
                 "params": 43266, "device": "cpu", "train_images": 128 * steps, "test_images": 1000,
                 "history": [], "resumed_step": 0})
    for e in range(1, stop_at[0] + 1):
        last = steps if e < stop_at[0] else stop_at[1]
        for s in range(1, last + 1):
            clock.t += step_seconds
            m = epoch_metrics(e - 1 + s / steps)
            view.handle({"type": "step", "epoch": e, "epochs": epochs, "step": s, "steps": steps,
                         "loss": m["train_loss"], "acc": m["train_acc"],
                         "lr": one_cycle(e - 1 + (s - 1) / steps, epochs), "images_per_s": images_per_s})
        if last == steps:
            clock.t += eval_seconds
            view.handle({"type": "epoch", "epoch": e, "epochs": epochs, "best": True, **epoch_metrics(e),
                         "lr": one_cycle(e - 1 + (steps - 1) / steps, epochs), "seconds": 123.6,
                         "train_seconds": 117.6, "images_per_s": images_per_s})


def terminal(width: int, height: int) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, color_system="256", width=width, height=height,
                   legacy_windows=False, _environ={"TERM": "xterm-256color"})


def plain(text: str) -> str:
    """Escape codes stripped, trailing blanks cut from every line."""
    return "\n".join(line.rstrip() for line in ANSI.sub("", text).splitlines()).rstrip("\n") + "\n"


_TOKEN = re.compile(r"\x1b\[\??([0-9;]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+")


def scrollback(raw: str) -> list[str]:
    """The lines a terminal holds, scrollback included, once it has been sent ``raw``: text,
    carriage return, line feed, cursor up and erase line are obeyed (what rich's live
    display uses); colours and the cursor's visibility are ignored."""
    lines, row, col = [""], 0, 0
    for m in _TOKEN.finditer(raw):
        t = m.group(0)
        if t == "\r":
            col = 0
        elif t == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif t.startswith("\x1b["):
            n = int(m.group(1)) if m.group(1).isdigit() else 1
            if m.group(2) == "A":
                row = max(0, row - n)
            elif m.group(2) == "K":
                lines[row] = ""
            elif m.group(2) == "G":
                col = n - 1
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + t + line[col + len(t):]
            col += len(t)
    return [ln.rstrip() for ln in lines]


def render_screen(view, width: int, height: int, colour: bool = False) -> str:
    """What ``view``'s live display shows on a ``width`` x ``height`` terminal."""
    out = terminal(width, height)
    out.print(view.screen)
    text = out.file.getvalue()
    return text if colour else plain(text)


def dashboard(width: int, height: int, colour: bool = False, **kw) -> str:
    """The dashboard of the fixed run (``drive``'s keywords change it) at this size."""
    from cifarctl.ui.train_view import TrainView

    clock = FakeClock()
    view = TrainView(terminal(width, height), tty=True, clock=clock)
    try:
        drive(view, clock, **kw)
    finally:
        view.close()
    return render_screen(view, width, height, colour)


def live_chart(colour: bool = False) -> str:
    """The live chart alone (12 epochs, lr sampled every step), 96 columns by 14 rows."""
    from cifarctl.ui.charts import epoch_chart, lr_points

    history = [{"epoch": e, **epoch_metrics(e), "lr": one_cycle(e, 12)} for e in range(1, 13)]
    trace = [(x / 20, one_cycle(x / 20, 12)) for x in range(1, 241)]
    text = epoch_chart(history, width=96, height=14, lr=lr_points(history, trace), colorless=not colour)
    return text if colour else plain(text)


CAPTURES = {
    "dashboard-80x24.txt": lambda: dashboard(80, 24),
    "dashboard-140x45.txt": lambda: dashboard(140, 45),
    "live-chart-96x14.txt": live_chart,
}


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for name, make in CAPTURES.items():
        (FOLDER / name).write_text(make(), encoding="utf-8")
        print(f"wrote {FOLDER / name}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
