"""`cifarctl compare`: run folders side by side, per-recipe means, and a chart of one metric."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifarctl.cli.app import app, console


class SortKey(str, Enum):
    best = "best"
    final = "final"
    time = "time"


class ExportFormat(str, Enum):
    csv = "csv"
    md = "md"
    json = "json"


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _pm(mean: float | None, std: float | None, fmt=_acc) -> str:
    """``mean ± std``; the mean alone when there is no spread over seeds (std None)."""
    if mean is None:
        return "-"
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n / 1e3:.0f}k" if n >= 10_000 else str(n)


def _natural(s: str) -> tuple:
    return (not s.isdigit(), int(s) if s.isdigit() else 0, s)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    s = round(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _status(r) -> str:
    color = {"completed": "green", "running": "cyan", "unknown": "yellow"}.get(r.status, "red")
    star = "*" if _notes(r) else ""
    return f"[{color}]{r.status}[/]{star}"


def _notes(r) -> list[str]:
    return [m for m in r.marks if m != r.status]


def _print(renderable) -> None:
    """Print; off a terminal (with no COLUMNS set) at the renderable's natural width,
    so a log file gets whole rows rather than columns squeezed to 80 characters."""
    import os

    if console.is_terminal or "COLUMNS" in os.environ:
        console.print(renderable)
        return
    from rich.console import Console
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update(width=240), renderable).maximum
    wide = Console(file=console.file, width=max(console.width, natural), color_system=console.color_system,
                   no_color=console.no_color, highlight=False)
    wide.print(renderable)


# Line colors (256-color codes, read by plotext and rich alike) and, without colors, markers.
_COLORS = (12, 9, 10, 13, 14, 11, 208, 141, 118, 219)
_MARKERS = "•+xo#@%=~^"


def _chart(lines: list[tuple[str, list[int], list[float]]], metric: str):
    """The metric chart with its legend underneath (plotext's own covers the lines)."""
    import plotext as plt
    from rich.console import Group
    from rich.text import Text

    colorless = not console.is_terminal or console.no_color or console.color_system is None
    fig = plt.figure
    fig.clear()
    fig.theme("simple")  # no background fill: readable on dark and light terminals
    fig.plot_size(min(console.width, 100), 18)
    entries = []
    for i, (label, xs, ys) in enumerate(lines):
        color, symbol = _COLORS[i % len(_COLORS)], _MARKERS[i % len(_MARKERS)]
        sig = fig.signal(xs, ys, marker=symbol if colorless else plt.marker("hd", pixel=color))
        sig.lines()
        fig.draw(sig)
        entries.append(Text.assemble((symbol if colorless else "━━", "" if colorless else f"color({color})"),
                                     f" {label}"))
    lo, hi = min(min(xs) for _, xs, _ in lines), max(max(xs) for _, xs, _ in lines)
    fig.ruler("x").ticks(list(range(lo, hi + 1, max(1, -(-(hi - lo) // 8)))))  # whole epochs only
    fig.title(f"{metric} per epoch")
    fig.label("epoch", "x")
    text = fig.build().string(colorless=colorless)
    fig.clear()
    one_line = sum(len(e) + 2 for e in entries) <= console.width
    legend = Text("  ").join(entries) if one_line else Text("\n").join(entries)
    return Group(Text.from_ansi(text, no_wrap=True), legend)


@app.command("compare", short_help="Compare runs: accuracy, time, target verdict, curves.")
def compare(
    run_dirs: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Run folders, or folders of runs (default: ./runs). Shell globs work: runs/s8_*"),
    ] = None,
    metric: Annotated[
        str, typer.Option("--metric", "-m", help="metrics.jsonl key to chart per epoch: test_acc, "
                          "train_acc, test_loss, train_loss, lr, seconds, images_per_s.")
    ] = "test_acc",
    export: Annotated[
        Optional[ExportFormat], typer.Option("--export", help="Write the table as csv, md or json (to stdout, or --out).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="File for --export (format from the suffix if --export is not given).")
    ] = None,
    sort: Annotated[SortKey, typer.Option("--sort", help="Order rows by best or final accuracy, or by time.")] = SortKey.best,
    by_run: Annotated[bool, typer.Option("--by-run", help="Chart every run, not the mean of each group's seeds.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print runs, groups and skipped folders as JSON only.")] = False,
) -> None:
    """Compare training runs: accuracy, time, target verdict; a metric chart.

    Runs are grouped by their whole resolved recipe except the seed and settings that
    cannot change results (workers, device-only knobs); a group shows mean ± std only
    when its seeds differ. Groups of the same recipe name are labelled by the settings in
    which they differ, e.g. s8_bn [data.train_subset=3000].
    """
    from cifarctl.compare import collect_runs, export as export_runs, group_runs, metric_names, sort_runs
    from cifarctl.errors import UsageError, did_you_mean

    fmt = export.value if export is not None else None
    if out is not None and fmt is None:
        fmt = out.suffix.lstrip(".").lower()
        if fmt not in {f.value for f in ExportFormat}:
            raise UsageError(f"--out {out}: cannot tell the format from the suffix; add --export csv|md|json")

    runs, skipped = collect_runs(run_dirs or [Path("runs")])
    if not runs:
        where = ", ".join(str(p) for p in run_dirs or [Path("runs")])
        why = "; ".join(f"{p}: {r}" for p, r in skipped[:5])
        raise UsageError(f"no runs with metrics found in {where}" + (f" ({why})" if why else ""))
    names = metric_names(runs)
    if metric not in names:
        raise UsageError(f"--metric {metric!r}: no numeric values in these runs{did_you_mean(metric, names)}; "
                         f"they log: {', '.join(names)}")
    runs = sort_runs(runs, sort.value)
    groups = group_runs(runs)

    if fmt is not None:
        text = export_runs(runs, groups, fmt, skipped)
        if out is None:
            print(text, end="")
            return
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--out {out}: {exc.strerror or exc}") from None
    if json:
        print(export_runs(runs, groups, "json", skipped), end="")
        return
    _render(runs, groups, skipped, metric, by_run)
    if out is not None:
        console.print(f"wrote {fmt} to {out}", highlight=False)


def _table(title: str, columns: list[str], numeric: tuple[str, ...] = ()):
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    for col in columns:
        table.add_column(col, justify="right" if col in numeric else "left", no_wrap=col == "run")
    return table


def _runs_table(runs, with_recipe: bool):
    from rich.text import Text

    numeric = ("params", "epochs", "best (ep)", "final", "time", "img/s")
    cols = ["run", "recipe", "model", *numeric, "target", "status"]
    if not with_recipe:
        cols.remove("recipe")
    table = _table(f"{len(runs)} run(s)", cols, numeric)
    for r in runs:
        epochs = f"{r.epochs}/{r.epochs_planned}" if r.epochs_planned not in (None, r.epochs) else str(r.epochs)
        best = _acc(r.best_acc) + (f" ({r.best_epoch})" if r.best_epoch is not None else "")
        verdict = {"PASS": "[green]PASS[/]", "FAIL": "[red]FAIL[/]"}.get(r.verdict, r.verdict)
        cells = [Text(r.name), Text(r.recipe), Text(r.model or "-"), _count(r.params), epochs, best,
                 _acc(r.final_acc), _dur(r.total_seconds),
                 f"{r.images_per_s:,.0f}" if r.images_per_s is not None else "-", verdict, _status(r)]
        if not with_recipe:
            del cells[1]
        table.add_row(*cells)
    return table


def _render(runs, groups, skipped, metric: str, by_run: bool) -> None:
    from rich.measure import Measurement
    from rich.text import Text

    from cifarctl.compare import curves

    table = _runs_table(runs, with_recipe=True)
    too_wide = Measurement.get(console, console.options.update(width=240), table).maximum > console.width
    if console.is_terminal and too_wide and all(r.name.startswith(r.recipe) for r in runs):
        table = _runs_table(runs, with_recipe=False)  # the run names already start with it
    _print(table)
    for r in runs:
        if _notes(r):
            console.print(Text(f"* {r.name}: {'; '.join(_notes(r))}", style="yellow"), soft_wrap=True)

    # a table of groups when some runs were grouped or some recipe names needed telling apart
    if any(g.n >= 2 or g.label != g.recipe for g in groups):
        gt = _table("Groups: finished runs, same settings but the seed (± sample std over seeds)",
                    ["group", "model", "n", "seeds", "best", "final", "time"], ("n",))
        for g in groups:
            seeds = ",".join(sorted(("-" if r.seed is None else str(r.seed) for r in g.runs), key=_natural))
            gt.add_row(Text(g.label), Text(g.model or "-"), str(g.n), seeds, _pm(g.best_mean, g.best_std),
                       _pm(g.final_mean, g.final_std), _pm(g.time_mean, g.time_std, _dur))
        console.print()
        _print(gt)

    lines = curves(runs, groups, metric, by_run)
    if lines:
        console.print()
        console.print(_chart(lines, metric))
    for p, why in skipped:
        console.print(Text(f"skipped {p}: {why}", style="yellow"), soft_wrap=True)
