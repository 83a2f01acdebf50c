"""What ``cifarctl train`` shows: a consumer of the engine's event stream.

On a terminal: a rich ``Progress`` with an epoch bar and a batch bar (loss, acc, lr,
img/s, ETA) inside a ``Live``, and above it a plotext chart of accuracy and loss redrawn
after each epoch; each finished epoch also leaves its plain line in the scrollback. Both
ETAs come from the steps completed so far (:class:`cifarctl.ui.eta.Eta`, evaluation time
included once an epoch has ended): rich's own stays blank when a step takes over 30 s.
Off a terminal: exactly one plain line per epoch, info lines, and the final lines, with
no escape codes. The same plain lines (:mod:`cifarctl.training.lines`) go to log.txt.
When a run stops (a signal, an error) the bars and chart are erased, so that what is
printed next is not left under a frozen progress bar.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from cifarctl.training.lines import epoch_line, final_lines, start_line, stop_point
from cifarctl.ui.eta import Eta


# ------------------------------------------------------------------------ the view
class _Screen:
    """The Live renderable: chart panel (once there is one) above the progress bars."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.chart: Panel | None = None

    def __rich__(self):
        return Group(self.chart, self.progress) if self.chart is not None else self.progress


class TrainView:
    """Consumes engine events; use as a context manager around the training loop."""

    def __init__(self, console: Console | None = None, *, tty: bool | None = None,
                 chart: bool = True, chart_height: int = 14, clock=None):
        import time

        self.clock = clock or time.monotonic  # for the ETAs (tests pass a fake one)
        self.eta = self.epoch_eta = None
        self.console = console or Console()
        self.tty = self.console.is_terminal if tty is None else tty
        self.chart_on = chart
        self.chart_height = chart_height
        self.history: list[dict] = []
        self.live = None
        self.progress: Progress | None = None
        self.epoch_task = self.batch_task = None
        self.steps = 0  # per epoch, from the "start" event

    # -- lifecycle
    def __enter__(self) -> TrainView:
        return self

    def _open(self) -> None:
        """Start the live display (on the "start" event: after data loading, which may
        show its own progress bar, and rich allows one live display at a time)."""
        from rich.live import Live

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
            MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),  # ui.eta: rich's needs steps < 30 s
            console=self.console, expand=True)
        self.screen = _Screen(self.progress)
        self.live = Live(self.screen, console=self.console, refresh_per_second=4,
                         transient=False, redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(clear=exc_type is not None)

    def close(self, clear: bool = False) -> None:
        """Stop the live display; ``clear`` erases it from the screen (else its last state stays)."""
        if self.live is not None:
            if clear:
                self.live.transient = True  # read by stop(): it moves back up and erases the bars
            self.live.stop()
            self.live = None

    # -- output
    def line(self, text: str, style: str | None = None) -> None:
        """One plain line (above the bars on a terminal), never wrapped, no markup."""
        self.console.print(Text(text, style=style or ""), soft_wrap=True, highlight=False)

    def handle(self, ev: dict) -> None:
        kind = ev.get("type")
        if kind == "start":
            self._start(ev)
        elif kind == "info":
            self.line(ev["message"], "yellow" if ev["message"].startswith("warning") else "dim")
        elif kind == "step":
            self._step(ev)
        elif kind == "epoch":
            self._epoch(ev)
        elif kind == "stopped":
            self.close(clear=True)
            where = stop_point(ev["epoch"], ev.get("step_in_epoch", 0), self.steps)
            self.line(f"{ev['signal']} received: stopping {where} and saving a checkpoint", "bold yellow")

    def lr_find_progress(self):
        """A context giving the progress callback of the LR range test that ``max_lr: auto``
        runs before training: a transient bar on stderr when it is a terminal, else None."""
        import sys
        from contextlib import contextmanager, nullcontext

        if not sys.stderr.isatty():
            return nullcontext(None)

        @contextmanager
        def bar():
            from rich.progress import TimeRemainingColumn

            with Progress(TextColumn("LR range test for max_lr: auto"), BarColumn(),
                          TextColumn("{task.completed}/{task.total}  lr {task.fields[lr]:.2e}"),
                          TimeRemainingColumn(), console=Console(stderr=True), transient=True) as prog:
                task = prog.add_task("lr", total=None, lr=0.0)
                yield lambda i, n, lr, loss: prog.update(task, completed=i, total=n, lr=lr)

        return bar()

    def finish(self, summary: dict) -> None:
        self.close()
        for text in final_lines(summary):
            style = None
            if text.startswith("target PASS"):
                style = "bold green"
            elif text.startswith("target FAIL"):
                style = "bold red"
            self.line(text, style)

    # -- events
    def _start(self, ev: dict) -> None:
        self.history = list(ev.get("history") or [])
        self.steps = ev["steps"]
        self.line(start_line(ev))
        self.eta = Eta(ev["epochs"] * ev["steps"], clock=self.clock)  # the whole run, in steps
        self.epoch_eta = Eta(ev["steps"], clock=self.clock)
        if self.tty and self.live is None:
            self._open()
            self.epoch_task = self.progress.add_task("epochs", total=ev["epochs"], completed=ev["epoch"],
                                                     stats="", eta="eta …")
            self.batch_task = self.progress.add_task(f"epoch {ev['epoch'] + 1}", total=ev["steps"], stats="",
                                                     completed=ev.get("step_in_epoch", 0),
                                                     eta="eta …")
            self._redraw_chart()

    def _step(self, ev: dict) -> None:
        if self.eta is not None:  # from the steps completed so far, whatever their length
            self.eta.update((ev["epoch"] - 1) * ev["steps"] + ev["step"], ev["epochs"] * ev["steps"])
            self.epoch_eta.update(ev["step"], ev["steps"])
        if self.progress is None:
            return
        stats = (f"loss {ev['loss']:.3f} acc {ev['acc']:.1f}% lr {ev['lr']:.1e} "
                 f"{ev['images_per_s']:,.0f} img/s")
        self.progress.update(self.batch_task, description=f"epoch {ev['epoch']}/{ev['epochs']}",
                             completed=ev["step"], total=ev["steps"], stats=stats, eta=self.epoch_eta.text())
        self.progress.update(self.epoch_task, eta=self.eta.text())

    def _epoch(self, ev: dict) -> None:
        self.history.append({k: ev[k] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")})
        self.line(epoch_line(ev), "bold" if ev.get("best") else None)
        if self.eta is not None:  # the same steps done, later: the evaluation counts too
            self.eta.update(ev["epoch"] * self.eta.total / ev["epochs"])
        if self.progress is None:
            return
        best = max(h["test_acc"] for h in self.history)
        self.progress.update(self.epoch_task, completed=ev["epoch"],
                             stats=f"test acc {ev['test_acc']:.1f}% (best {best:.1f}%)")
        if self.eta is not None:
            self.progress.update(self.epoch_task, eta=self.eta.text())
        if ev["epoch"] < ev["epochs"]:
            self.epoch_eta = Eta(self.epoch_eta.total if self.epoch_eta else 0, clock=self.clock)
            self.progress.reset(self.batch_task, description=f"epoch {ev['epoch'] + 1}/{ev['epochs']}",
                                stats="", eta="eta …")
        self._redraw_chart()

    def _redraw_chart(self) -> None:
        if not (self.chart_on and self.history and self.live is not None):
            return
        from cifarctl.ui.charts import epoch_chart

        room = self.console.height - 9  # keep the bars and the scrollback line on screen
        if room < 8:
            return
        width = max(40, min(self.console.width, 140) - 4)
        text = epoch_chart(self.history, width=width, height=min(self.chart_height, room))
        self.screen.chart = Panel(Text.from_ansi(text), title="accuracy and loss by epoch",
                                  border_style="dim", expand=False)
        self.live.refresh()
