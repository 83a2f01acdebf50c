"""What ``cifarctl sweep`` shows: a consumer of :func:`cifarctl.training.sweep.run_sweep`'s events.

On a terminal, a ``Live`` table of the trials (values, status, epoch, best accuracy, time)
under an overall bar with an ETA from the trials finished so far; off one, a line when a
trial starts and one when it ends. Each running trial's epoch and best accuracy are read
from its run folder's metrics.jsonl, as ``compare`` reads them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cifarctl.fsutil import read_regular
from cifarctl.safetext import shown
from cifarctl.ui.render import print_line


def _progress_of(run_dir: Path) -> tuple[int, float | None]:
    """(epochs logged, best test accuracy so far) from a run folder's metrics.jsonl."""
    data = read_regular(run_dir / "metrics.jsonl", 16 << 20) or b""
    rows = []
    for line in data.decode(errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    accs = [r["test_acc"] for r in rows if isinstance(r, dict) and isinstance(r.get("test_acc"), (int, float))]
    return len(rows), (max(accs) if accs else None)


class SweepView:
    """Consumes sweep events; use as a context manager around the sweep."""

    def __init__(self, console: Console, runs: Path):
        self.console, self.runs = console, runs
        self.tty = console.is_terminal
        self.trials: dict[str, dict] = {}
        self.total = self.finished = 0
        self.durations: list[float] = []
        self.live = None
        self.progress = None
        self.task = None

    def __enter__(self) -> SweepView:
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def handle(self, ev: dict) -> None:
        kind = ev["type"]
        if kind == "note":
            print_line(self.console, f"note: {ev['text']}")
        elif kind == "plan":
            self.total, self.finished = ev["total"], ev["done"]
            print_line(self.console, f"sweep: {ev['total']} trial(s), {ev['done']} finished before, "
                                     f"{ev['jobs']} to run")
            if self.tty and ev["jobs"]:
                from rich.live import Live

                self.progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                         TextColumn("{task.fields[eta]}"), console=self.console)
                self.task = self.progress.add_task("sweep", total=self.total, completed=self.finished, eta="")
                self.live = Live(self._render(), console=self.console, refresh_per_second=2, transient=True)
                self.live.start()
        elif kind == "start":
            self.trials[ev["name"]] = {"params": ev["params"], "status": "resuming" if ev["resume"] else "running",
                                       "t0": time.monotonic(), "value": None}
            if not self.tty:
                how = "recorded (trained before)" if ev.get("reused") else "resumed" if ev["resume"] else "started"
                print_line(self.console, f"trial {ev['name']}: {how}")
        elif kind == "elsewhere":
            self.finished += 1
            line = f"trial {ev['name']}: left to another sweep driver, which is training it"
            if self.live is not None:
                self.live.console.print(Text(shown(line)), soft_wrap=True)
            else:
                print_line(self.console, line)
        elif kind == "end":
            t = self.trials.setdefault(ev["name"], {"params": ev["params"], "t0": time.monotonic()})
            t.update(status="done" if ev["ok"] else "failed", value=ev["value"], seconds=ev["seconds"],
                     error=ev["error"])
            self.finished += 1
            self.durations.append(ev["seconds"])
            if self.tty:
                if self.live is not None:
                    self.live.console.print(Text(shown(self._end_line(ev))), soft_wrap=True)
            else:
                print_line(self.console, self._end_line(ev))
        if self.live is not None:
            self.progress.update(self.task, completed=self.finished, eta=self._eta())
            self.live.update(self._render())

    @staticmethod
    def _end_line(ev: dict) -> str:
        if ev["ok"]:
            return f"trial {ev['name']}: best {ev['value']:.2f}% in {ev['seconds']:.0f}s"
        return f"trial {ev['name']}: failed ({ev['error']})"

    def _eta(self) -> str:
        left = self.total - self.finished
        if not self.durations or not left:
            return ""
        running = max(1, sum(1 for t in self.trials.values() if t.get("status") in ("running", "resuming")))
        return f"eta {sum(self.durations) / len(self.durations) * left / running:,.0f}s"

    def _render(self):
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("trial", "status", "epoch", "best", "time"):
            table.add_column(col, justify="right" if col in ("epoch", "best", "time") else "left", overflow="fold")
        for name, t in list(self.trials.items())[-20:]:
            epochs, best = _progress_of(self.runs / name)
            best = t["value"] if t.get("value") is not None else best
            secs = t.get("seconds", time.monotonic() - t["t0"])
            table.add_row(Text(shown(name)), t["status"], str(epochs), "-" if best is None else f"{best:.2f}",
                          f"{secs:,.0f}s")
        return Group(self.progress, table) if self.progress is not None else table
