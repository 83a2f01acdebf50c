"""What ``cifarctl train`` shows: a consumer of the engine's event stream.

On a terminal, a ``Live`` dashboard laid out for the terminal's size at every refresh (a
resize re-lays it out): from :data:`WIDE` columns a rich ``Progress`` with an epoch bar
and a batch bar (loss, acc, lr, img/s, elapsed, ETA); on a narrower terminal, one status
line (epoch, step, loss/acc, elapsed, ETA, then whatever else fits), never cut. Above either,
the plotext chart of accuracy, loss and learning rate by epoch, only where it fits: at
most half the terminal's height (the rest is for the bars and the scrollback) and at
least :data:`CHART_MIN_ROWS` rows of plot, so not at 80x24. Each finished epoch also
leaves its plain line in the scrollback. The ETAs come from the steps completed so far
(:class:`cifarctl.ui.eta.Eta`, evaluation time included once an epoch has ended): rich's
own stays blank when a step takes over 30 s.
Off a terminal: exactly one plain line per epoch, info lines, and the final lines, with
no escape codes. The same plain lines (:mod:`cifarctl.training.lines`) go to log.txt.
When a run stops (a signal, an error) the bars and chart are erased, so that what is
printed next is not left under a frozen progress bar.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cifarctl.training.lines import epoch_line, final_lines, start_line, stop_point
from cifarctl.ui.charts import epoch_chart, epoch_key, lr_points
from cifarctl.ui.eta import Eta, fmt_duration
from cifarctl.ui.render import print_line
from cifarctl.ui.sweep_progress import SweepProgress

WIDE = 100            # columns from which the dashboard has progress bars; below, one status line
CHART_MIN_ROWS = 12   # the fewest rows of plot (axes and tick labels included) worth drawing
CHART_MIN_WIDTH = 64  # columns
CHART_MAX_WIDTH = 140
LR_PANEL_WIDTH = 96   # the chart's columns from which it has the learning-rate panel
UNKNOWN_ETA = "eta " + fmt_duration(None)


# ------------------------------------------------------------------------ the view
class _Screen:
    """The Live renderable, laid out for the console's size each time it is drawn: the
    chart (where it fits) above the progress bars (from ``WIDE`` columns) or the status line."""

    def __init__(self, view: TrainView):
        self.view = view

    def __rich_console__(self, console: Console, options):
        width, height = options.max_width, options.height or console.height
        compact = width < WIDE
        parts = []
        chart = self.view.chart_panel(width, height)
        if chart is not None:
            parts.append(chart)
        parts.append(self.view.status_line(width) if compact else self.view.progress)
        yield Group(*parts)


class TrainView:
    """Consumes engine events; use as a context manager around the training loop."""

    def __init__(self, console: Console | None = None, *, tty: bool | None = None,
                 chart: bool = True, chart_height: int = 14, clock=None):
        self.clock = clock or time.monotonic  # for the ETAs (tests pass a fake one)
        self.eta = self.epoch_eta = None
        self.console = console or Console()
        self.tty = self.console.is_terminal if tty is None else tty
        self.console.on_broken_pipe = self._lost_output  # a closed pipe does not end the run
        self.chart_on = chart
        self.chart_height = chart_height
        self.history: list[dict] = []
        self.lr_trace: list[tuple[float, float]] = []  # (epochs done, lr) at the steps seen
        self.live = None
        self.progress: Progress | None = None
        self.epoch_task = self.batch_task = None
        self.started: float | None = None
        self.last_step: dict | None = None
        self.epochs = self.steps = 0
        self.epoch_now = 0  # the epoch under way (or the last one done)
        self._chart_cache: tuple | None = None  # (key, panel)

    @property
    def display_interval(self) -> float | None:
        """Seconds between the engine's mid-epoch display points: a few per second for the
        live dashboard, none off a terminal (one line per epoch: nothing to read mid-epoch)."""
        return 0.25 if self.tty else None

    # -- lifecycle
    def __enter__(self) -> TrainView:
        return self

    def _open(self) -> None:
        """Start the live display (on the "start" event: after data loading, which may
        show its own progress bar, and rich allows one live display at a time)."""
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
            MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),  # ui.eta: rich's needs steps < 30 s
            console=self.console, expand=True, get_time=self.clock)
        self.screen = _Screen(self)
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
        live = self.live
        if live is None:
            print_line(self.console, text, style)
            return
        # rich moves the cursor up over the live display for a printed line under the Live's
        # lock but writes after releasing it: a refresh from its thread in between (the chart
        # is slow to draw) leaves a whole frame behind, the chart twice. Hold it across the print.
        with live._lock:
            print_line(self.console, text, style)

    def _lost_output(self) -> None:
        """stdout was a pipe whose reader left (``train ... | head``): training goes on, its
        lines still reach log.txt; what would have been printed goes nowhere. (Replaces
        rich's ``Console.on_broken_pipe``, which exits with 1.)"""
        self.console.quiet = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush fails no more
            os.close(devnull)
        except (OSError, ValueError):
            pass

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
        runs before training: a transient bar on stderr when it is a terminal, else a plain
        line every 10 % (and an estimate of its duration) on this view's console."""
        if not sys.stderr.isatty():

            return SweepProgress(self.console, 1, tty=False, clock=self.clock,
                                 label="max_lr: auto, LR range test")

        @contextmanager
        def bar():

            # started by the test's first step: no bar while the data loads, none for a numeric max_lr;
            # bound to the stream now: torch-lr-finder's own output is redirected during the test
            prog = Progress(TextColumn("LR range test for max_lr: auto"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}  lr {task.fields[lr]:.2e}"),
                            TimeRemainingColumn(), console=Console(file=sys.stderr), transient=True)
            task = prog.add_task("lr", total=None, lr=0.0)

            def step(i, n, lr, loss):
                prog.update(task, completed=i, total=n, lr=lr)
                if not prog.live.is_started:
                    prog.start()

            try:
                yield step
            finally:
                if prog.live.is_started:
                    prog.stop()

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
        self.lr_trace = []
        self.started = self.clock()
        self.epochs, self.steps, self.epoch_now = ev["epochs"], ev["steps"], ev["epoch"] + 1
        self.line(start_line(ev))
        self.eta = Eta(ev["epochs"] * ev["steps"], clock=self.clock)  # the whole run, in steps
        self.epoch_eta = Eta(ev["steps"], clock=self.clock)
        if self.tty and self.live is None:
            self._open()
            self.epoch_task = self.progress.add_task("epochs", total=ev["epochs"], completed=ev["epoch"],
                                                     stats="", eta=UNKNOWN_ETA)
            self.batch_task = self.progress.add_task(f"epoch {ev['epoch'] + 1}", total=ev["steps"], stats="",
                                                     completed=ev.get("step_in_epoch", 0),
                                                     eta=UNKNOWN_ETA)
            self._redraw_chart()

    def _step(self, ev: dict) -> None:
        self.last_step, self.epoch_now = ev, ev["epoch"]
        x = ev["epoch"] - 1 + ev["step"] / ev["steps"]
        if not self.lr_trace or x - self.lr_trace[-1][0] >= 0.02 or ev["step"] == ev["steps"]:
            self.lr_trace.append((x, float(ev["lr"])))  # at most ~50 points an epoch
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
        self.history.append({k: ev[k] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
                             if k in ev})
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
                                stats="", eta=UNKNOWN_ETA)
        self._redraw_chart()

    def _redraw_chart(self) -> None:
        """A new epoch for the chart: the next drawing of the screen builds it again."""
        self._chart_cache = None
        if self.live is not None:
            self.live.refresh()

    # -- the layout (called by _Screen at every drawing, with the console's size)
    def chart_rows(self, width: int, height: int) -> int:
        """The rows of plot the chart gets in a ``width`` x ``height`` terminal, 0 for none:
        its panel (2 rows more) takes at most half the height, and it needs ``CHART_MIN_ROWS``."""
        if not (self.chart_on and self.history) or width < CHART_MIN_WIDTH:
            return 0
        rows = min(self.chart_height, height // 2 - 2)
        return rows if rows >= CHART_MIN_ROWS else 0

    def chart_panel(self, width: int, height: int) -> Panel | None:
        """The chart panel for this size (built once per epoch and size), or None."""
        rows = self.chart_rows(width, height)
        if not rows:
            return None
        plot_width = min(width, CHART_MAX_WIDTH) - 4  # the panel's borders and padding
        lr = plot_width >= LR_PANEL_WIDTH
        history = list(self.history)  # Live's refresh thread draws while the events come in
        key = (len(history), plot_width, rows)
        if self._chart_cache is None or self._chart_cache[0] != key:
            text = epoch_chart(history, width=plot_width, height=rows,
                               lr=lr_points(history, list(self.lr_trace)), panels=3 if lr else 2)
            has_lr = lr and any(h.get("lr") is not None for h in history)
            title = "accuracy, loss and learning rate by epoch" if has_lr else "accuracy and loss by epoch"
            panel = Panel(Text.from_ansi(text.rstrip("\n"), no_wrap=True), title=title, subtitle=epoch_key(has_lr),
                          border_style="dim", expand=False)
            self._chart_cache = (key, panel)
        return self._chart_cache[1]

    def status_line(self, width: int) -> Text:
        """The one-line dashboard below ``WIDE`` columns: epoch, step, loss and accuracy,
        elapsed and ETA always (on two lines, each part whole, where even they do not fit),
        then the last test accuracy, lr and throughput, each where it fits."""
        ev = self.last_step
        step = ev["step"] if ev is not None and ev["epoch"] == self.epoch_now else 0
        left = self.eta.remaining() if self.eta is not None else None
        elapsed = self.clock() - self.started if self.started is not None else None
        must = [(f"epoch {self.epoch_now}/{self.epochs}", "bold"), (f"step {step}/{self.steps}", "")]
        if ev is not None:
            must.append((f"loss {ev['loss']:.3f} acc {ev['acc']:.1f}%", ""))
        must += [(f"elapsed {fmt_duration(elapsed)}", ""), ("eta " + fmt_duration(left), "bold")]
        extra = []
        if self.history:
            best = max(h["test_acc"] for h in self.history)
            extra.append((f"test {self.history[-1]['test_acc']:.1f}% (best {best:.1f}%)", ""))
        if ev is not None:
            extra += [(f"lr {ev['lr']:.1e}", "dim"), (f"{ev['images_per_s']:,.0f} img/s", "dim")]
        sep = "  "
        used = sum(len(t) for t, _ in must) + len(sep) * (len(must) - 1)
        shown = list(must)
        for part in extra:  # in order of importance, each where it fits
            if used + len(sep) + len(part[0]) > width:
                continue
            shown.insert(len(shown) - 2, part)  # before elapsed and eta, which stay last
            used += len(sep) + len(part[0])
        text = Text(no_wrap=False, overflow="fold")  # fold only a part wider than the terminal
        column = 0
        for i, (part, style) in enumerate(shown):
            if i and column + len(sep) + len(part) > width:  # the next line rather than a part cut
                text.append("\n")
                column = 0
            elif i:
                text.append(sep)
                column += len(sep)
            text.append(part, style)
            column += len(part)
        return text
