"""Progress of an LR range test: a live bar on a terminal, plain lines off one.

:class:`SweepProgress` is the ``progress(i, n, lr, loss)`` callback of
:func:`cifarctl.training.lrfind.run_lr_find`. On a terminal it draws a rich bar whose ETA comes
from :class:`cifarctl.ui.eta.Eta` (rich's own needs steps shorter than 30 s). Off one
(a pipe, a log file, ``nohup``) it prints, with no escape codes: one line with the
estimated duration once the first steps are timed, then a line about every 10 % of
the sweep, so a 7-minute CPU sweep is not 7 minutes of silence. :meth:`SweepProgress.planned`
says the number of steps and a first estimate before the sweep starts, on both.

The LR range test runs with stdout and stderr sent to a buffer (torch-lr-finder's own
bar and prints): give it a console bound to its stream (``Console(file=sys.stdout)``),
or the live bar's refresh thread draws into that buffer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.text import Text

from cifarctl.ui.eta import Eta, fmt_duration

ESTIMATE_AFTER = 3   # steps timed before the duration estimate (the first one warms up)


def device_label(device) -> str:
    """``cpu (2 threads)``, ``cuda:0 (NVIDIA H200)``: the device a sweep runs on."""
    dev = device if isinstance(device, torch.device) else torch.device(str(device))
    if dev.type == "cuda":
        try:
            return f"{dev} ({torch.cuda.get_device_name(dev)})"
        except (RuntimeError, AssertionError):
            return str(dev)
    if dev.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(dev)


class SweepProgress:
    """``progress(i, n, lr, loss)`` for an LR range test; a context manager."""

    def __init__(self, console: Console, total: int, *, tty: bool | None = None, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic, label: str = "sweep"):
        self.console = console
        self.total = int(total)
        self.tty = console.is_terminal if tty is None else tty
        self.enabled = enabled
        self.clock = clock
        self.label = label
        self.eta = Eta(self.total, clock=clock)
        self.start = clock()
        self.steps = 0
        self.last_decile = 0
        self.estimated = False
        self.bar = None
        self.task = None

    # -- lifecycle
    def __enter__(self) -> SweepProgress:
        self.start = self.clock()
        if self.enabled and self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                TextColumn("{task.fields[eta]}"), console=self.console, transient=True)
            self.task = self.bar.add_task(self.label, total=self.total, info="", eta="")
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def _line(self, text: str) -> None:
        self.console.print(Text(text), soft_wrap=True, highlight=False)

    # -- before the first step
    def planned(self, n: int, seconds_per_step: float) -> None:
        """The sweep's length and an estimate of its duration, said before its first step
        (``run_lr_find``'s ``on_start``: from a timed forward and backward pass)."""
        self.total = int(n)
        if not self.enabled:
            return
        guess = f"about {fmt_duration(n * seconds_per_step)}"
        self._line(f"{self.label}: {n} steps, {guess} ({seconds_per_step:.2g} s/step from a timed pass; "
                   "less if the loss diverges first)")
        if self.bar is not None:
            self.bar.update(self.task, total=n, eta=guess)

    # -- the callback
    def __call__(self, i: int, n: int, lr: float, loss: float) -> None:
        self.steps = i
        self.total = n
        self.eta.update(i, n)
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=i, total=n, info=f"lr {lr:.1e}  loss {loss:.3f}",
                            eta=self.eta.text())
            return
        if not self.estimated and (i >= ESTIMATE_AFTER or i == n) and self.eta.seconds_per_unit() is not None:
            self.estimated = True
            rate = self.eta.seconds_per_unit()
            whole = self.clock() - self.start + self.eta.remaining()
            self._line(f"{self.label}: {rate:.2g} s/step after {i} steps: about {fmt_duration(whole)} for "
                       f"all {n} (less if the loss diverges first)")
        decile = i * 10 // n if n else 10
        if decile > self.last_decile:
            self.last_decile = decile
            left = self.eta.remaining()
            tail = "" if i >= n or left is None else f", about {fmt_duration(left)} left"
            self._line(f"{self.label} {i}/{n} ({100 * i // n}%)  lr {lr:.1e}  loss {loss:.3f}  "
                       f"{fmt_duration(self.clock() - self.start)}{tail}")

    def finished(self, result) -> None:
        """After the sweep: off a terminal, a line when it stopped early (divergence)."""
        if not self.enabled:
            return
        ran = len(result.lr)
        if ran < result.num_iter and result.divergence_index is not None:
            self._line(f"{self.label} stopped at step {ran}/{result.num_iter}: the loss diverged "
                       f"(lr {result.lr[-1]:.1e})")
