"""What ``cifarctl compare`` shows: the runs table, per-recipe means, notes, a metric chart."""

from __future__ import annotations

from rich.console import Console, Group
from rich.text import Text

from cifarctl.tabular import Column, Tabular, markdown
from cifarctl.ui.charts import metric_chart as chart
from cifarctl.ui.render import print_line, print_table

_HUGE = 1e9  # a value past this (a hostile or broken metrics file) is shown in 3 digits, not 300


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}" if abs(v) < _HUGE else f"{v:.3g}"


def _pm(mean: float | None, std: float | None, fmt=_acc) -> str:
    """``mean ± std``; the mean alone when there is no spread over seeds (std None)."""
    if mean is None:
        return "-"
    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= _HUGE:
        return f"{n:.3g}"
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n / 1e3:.0f}k" if n >= 10_000 else str(n)


def _natural(s: str) -> tuple:
    return (not s.isdigit(), int(s) if s.isdigit() else 0, s)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= _HUGE:
        return f"{s / 3600:.3g}h"
    s = round(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _notes(r) -> list[str]:
    return [m for m in r.marks if m != r.status]


_STATUS_STYLE = {"completed": "green", "running": "cyan", "unknown": "yellow"}


def runs_table(runs) -> Tabular:
    """One row per run: params, epochs, best (epoch), final, time, img/s, target, status
    (``*``: the run has notes, printed under the table)."""
    tab = Tabular(f"{len(runs)} run(s)", [
        Column("run"), Column("recipe", drop=2), Column("model", drop=3), Column("params", "right", drop=4),
        Column("epochs", "right"), Column("best (ep)", "right"), Column("final", "right"),
        Column("time", "right", drop=1), Column("img/s", "right", drop=5), Column("target"), Column("status")],
        compact=True)
    for r in runs:
        epochs = f"{r.epochs}/{r.epochs_planned}" if r.epochs_planned not in (None, r.epochs) else str(r.epochs)
        best = _acc(r.best_acc) + (f" ({r.best_epoch})" if r.best_epoch is not None else "")
        tab.add_row(r.name, r.recipe, r.model or "-", _count(r.params), epochs, best, _acc(r.final_acc),
                    _dur(r.total_seconds), (f"{r.images_per_s:,.0f}" if r.images_per_s < _HUGE else f"{r.images_per_s:.3g}") if r.images_per_s is not None else "-",
                    r.verdict, r.status + ("*" if _notes(r) else ""),
                    cell_styles={9: {"PASS": "green", "FAIL": "red"}.get(r.verdict, ""),
                                 10: _STATUS_STYLE.get(r.status, "red")})
    tab.notes = [selection_note(runs)] + [f"* {r.name}: {'; '.join(_notes(r))}" for r in runs if _notes(r)]
    return tab


def selection_note(runs) -> str:
    """Which split chose each run's best epoch (and so its best.pt)."""
    on_val = sorted(r.name for r in runs if r.selected_on == "val")
    if not on_val:
        return "best (ep): the epoch chosen on the test split (no validation split)"
    if len(on_val) == len(runs):
        return "best (ep): test accuracy of the epoch chosen on the validation split"
    return (f"best (ep): chosen on the validation split for {', '.join(on_val)}; on the test split "
            "for the others")


def groups_table(groups) -> Tabular:
    """Groups (same settings but the seed): mean ± sample std of best, final, time over seeds."""
    tab = Tabular("Groups: finished runs, same settings but the seed (± sample std over seeds)", [
        Column("group"), Column("model", drop=1), Column("n", "right"), Column("seeds", drop=2),
        Column("best", "right"), Column("final", "right"), Column("time", "right", drop=3)], compact=True)
    for g in groups:
        seeds = ",".join(sorted(("-" if r.seed is None else str(r.seed) for r in g.runs), key=_natural))
        tab.add_row(g.label, g.model or "-", str(g.n), seeds, _pm(g.best_mean, g.best_std),
                    _pm(g.final_mean, g.final_std), _pm(g.time_mean, g.time_std, _dur))
    return tab


def has_groups_table(groups) -> bool:
    """A table of groups when some runs were grouped or some recipe names needed telling apart."""
    return any(g.n >= 2 or g.label != g.recipe for g in groups)


def compare_markdown(runs, groups, skipped=()) -> str:
    """The runs table, the groups table (when there is one) and the skipped folders, as
    markdown: what ``--format md`` prints and ``--export md`` writes."""
    parts = [markdown(runs_table(runs))]
    if has_groups_table(groups):
        parts.append(markdown(groups_table(groups)))
    if skipped:
        parts.append("\n".join(f"- skipped `{p}`: {why}" for p, why in skipped) + "\n")
    return "\n".join(parts)


def metric_chart(console: Console, lines, metric: str):
    """The metric chart with its legend underneath (plotext's own covers the lines)."""
    colorless = not console.is_terminal or console.no_color or console.color_system is None
    text, entries = chart(lines, metric, min(console.width, 100), colorless)
    one_line = sum(len(e) + 2 for e in entries) <= console.width
    legend = Text("  ").join(entries) if one_line else Text("\n").join(entries)
    return Group(Text.from_ansi(text, no_wrap=True), legend)


def show_compare(console: Console, runs, groups, skipped, lines, metric: str) -> None:
    """The runs table and each run's notes, the groups, the chart, the skipped folders."""
    print_table(console, runs_table(runs))
    if has_groups_table(groups):
        console.print()
        print_table(console, groups_table(groups))
    if lines:
        console.print()
        console.print(metric_chart(console, lines, metric))
    for p, why in skipped:
        print_line(console, f"skipped {p}: {why}", "yellow")
