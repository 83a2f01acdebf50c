"""Remaining time from the work completed so far, for jobs whose steps take minutes.

:class:`Eta` divides the wall time since its first update by the units completed since
then, over the whole job: it shows from the second update on, whatever the step length,
and on a training run it includes the evaluation and checkpoint time between epochs once
an epoch boundary has passed. No rich, no torch.

Why not rich's ``TimeRemainingColumn`` (with ``Progress(speed_estimate_period=...)``
raised past its 30-second default)? It would serve one bar on a terminal only: the
off-terminal lines of ``lr-find`` and ``sweep`` ("about 4m for 100 steps") have no rich
task; the run-level estimate must count the evaluation between epochs, which a rate of
progress updates leaves out (rich also keeps at most the last 1,000 updates); and one
class gives the same figure on a terminal and in a pipe. ``tests/test_eta.py`` holds it
to that.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m 05s``, ``1h 02m``; ``?`` for None."""
    if seconds is None:
        return "?"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


class Eta:
    """Remaining time of ``total`` units of work from the rate of the units done so far.

    ``update(done)`` after each completed unit (step, epoch: anything countable). The
    first update is the reference point: it excludes start-up (data loading, the first
    step's warm-up) from the rate. ``remaining()`` is None until a second update has
    moved ``done`` forward.
    """

    def __init__(self, total: float, clock: Callable[[], float] = time.monotonic):
        self.total = float(total)
        self.clock = clock
        self.ref: tuple[float, float] | None = None   # (time, done) at the first update
        self.last: tuple[float, float] | None = None  # (time, done) at the latest update

    def update(self, done: float, total: float | None = None) -> None:
        if total is not None:
            self.total = float(total)
        now = self.clock()
        if self.ref is None or done < self.ref[1]:  # first update, or the count went back: start over
            self.ref = (now, float(done))
        self.last = (now, float(done))

    def seconds_per_unit(self) -> float | None:
        if self.ref is None or self.last is None or self.last[1] <= self.ref[1]:
            return None
        return (self.last[0] - self.ref[0]) / (self.last[1] - self.ref[1])

    def remaining(self) -> float | None:
        """Seconds left (from the latest update), or None while there is no rate yet."""
        rate = self.seconds_per_unit()
        if rate is None or self.last is None:
            return None
        return max(0.0, (self.total - self.last[1]) * rate)

    def text(self, prefix: str = "eta ") -> str:
        """``eta 12m 30s``, or ``eta ?`` while unknown (not ``…``, which reads as a cut time)."""
        return f"{prefix}{fmt_duration(self.remaining())}"
