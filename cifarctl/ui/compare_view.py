"""What ``cifarctl compare`` shows: the runs table, per-recipe means, notes, a metric chart."""

from __future__ import annotations

import os

from rich.console import Console, Group
from rich.text import Text


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


def _notes(r) -> list[str]:
    return [m for m in r.marks if m != r.status]


def _status(r) -> str:
    color = {"completed": "green", "running": "cyan", "unknown": "yellow"}.get(r.status, "red")
    star = "*" if _notes(r) else ""
    return f"[{color}]{r.status}[/]{star}"


def print_natural_width(console: Console, renderable) -> None:
    """Print; off a terminal (with no COLUMNS set) at the renderable's natural width,
    so a log file gets whole rows rather than columns squeezed to 80 characters."""
    if console.is_terminal or "COLUMNS" in os.environ:
        console.print(renderable)
        return
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update(width=240), renderable).maximum
    wide = Console(file=console.file, width=max(console.width, natural), color_system=console.color_system,
                   no_color=console.no_color, highlight=False)
    wide.print(renderable)


def _table(title: str, columns: list[str], numeric: tuple[str, ...] = ()):
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    for col in columns:
        table.add_column(col, justify="right" if col in numeric else "left", no_wrap=col == "run")
    return table


def runs_table(runs, with_recipe: bool = True):
    """One row per run: params, epochs, best (epoch), final, time, img/s, target, status."""
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


def groups_table(groups):
    """Groups (same settings but the seed): mean ± sample std of best, final, time over seeds."""
    gt = _table("Groups: finished runs, same settings but the seed (± sample std over seeds)",
                ["group", "model", "n", "seeds", "best", "final", "time"], ("n",))
    for g in groups:
        seeds = ",".join(sorted(("-" if r.seed is None else str(r.seed) for r in g.runs), key=_natural))
        gt.add_row(Text(g.label), Text(g.model or "-"), str(g.n), seeds, _pm(g.best_mean, g.best_std),
                   _pm(g.final_mean, g.final_std), _pm(g.time_mean, g.time_std, _dur))
    return gt


def metric_chart(console: Console, lines, metric: str):
    """The metric chart with its legend underneath (plotext's own covers the lines)."""
    from cifarctl.ui.charts import metric_chart as chart

    colorless = not console.is_terminal or console.no_color or console.color_system is None
    text, entries = chart(lines, metric, min(console.width, 100), colorless)
    one_line = sum(len(e) + 2 for e in entries) <= console.width
    legend = Text("  ").join(entries) if one_line else Text("\n").join(entries)
    return Group(Text.from_ansi(text, no_wrap=True), legend)


def show_compare(console: Console, runs, groups, skipped, lines, metric: str) -> None:
    """The runs table (without the recipe column on a narrow terminal when every run name
    starts with its recipe), each run's notes, the per-recipe means, the chart, the skipped."""
    from rich.measure import Measurement

    table = runs_table(runs, with_recipe=True)
    too_wide = Measurement.get(console, console.options.update(width=240), table).maximum > console.width
    if console.is_terminal and too_wide and all(r.name.startswith(r.recipe) for r in runs):
        table = runs_table(runs, with_recipe=False)  # the run names already start with it
    print_natural_width(console, table)
    for r in runs:
        if _notes(r):
            console.print(Text(f"* {r.name}: {'; '.join(_notes(r))}", style="yellow"), soft_wrap=True)
    # a table of groups when some runs were grouped or some recipe names needed telling apart
    if any(g.n >= 2 or g.label != g.recipe for g in groups):
        console.print()
        print_natural_width(console, groups_table(groups))
    if lines:
        console.print()
        console.print(metric_chart(console, lines, metric))
    for p, why in skipped:
        console.print(Text(f"skipped {p}: {why}", style="yellow"), soft_wrap=True)
