"""`cifarctl compare`: run folders side by side, per-recipe means, and a chart of one metric."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import FormatOption, OutputFormat, app, console, output_format


class SortKey(str, Enum):
    best = "best"
    final = "final"
    time = "time"


class ExportFormat(str, Enum):
    csv = "csv"
    md = "md"
    json = "json"


@app.command("compare", short_help="Compare runs: accuracy, time, target verdict, curves.")
def compare(
    run_dirs: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Run folders, or folders of runs (default: ./runs). Shell globs work: runs/s8_*",
                       autocompletion=complete.complete_run_dir),
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
    json: Annotated[bool, typer.Option("--json", help="Print runs, groups and skipped folders as JSON only "
                                       "(same as --format json).")] = False,
    view: FormatOption = OutputFormat.table,
) -> None:
    """Compare training runs: accuracy, time, target verdict; a metric chart.

    Runs are grouped by their whole resolved recipe except the seed and settings that
    cannot change results (workers, device-only knobs); a group shows mean ± std only
    when its seeds differ. Groups of the same recipe name are labelled by the settings in
    which they differ, e.g. s8_bn [data.train_subset=3000].
    """
    from cifarctl.analysis.compare import collect_runs, curves, group_runs, metric_names, sort_runs
    from cifarctl.errors import UsageError, did_you_mean

    view = output_format(view, json)
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
        logged = f"they log: {', '.join(names)}" if names else "they log no finite numbers at all"
        raise UsageError(f"--metric {metric!r}: no numeric values in these runs{did_you_mean(metric, names)}; "
                         f"{logged}")
    runs = sort_runs(runs, sort.value)
    groups = group_runs(runs)

    if fmt is not None:
        text = _render(runs, groups, fmt, skipped)
        if out is None:
            print(text, end="")
            return
        from cifarctl.fsutil import write_atomic

        write_atomic(out, text, parents=True, user_path=True)
    if view != "table":
        print(_render(runs, groups, view, skipped), end="")
        return
    from cifarctl.ui.compare_view import show_compare

    show_compare(console, runs, groups, skipped, curves(runs, groups, metric, by_run), metric)
    if out is not None:
        from cifarctl.ui.render import print_line

        print_line(console, f"wrote {fmt} to {out}")


def _render(runs, groups, fmt: str, skipped) -> str:
    """csv and json in full from the library; md is the table the terminal shows."""
    if fmt == "md":
        from cifarctl.ui.compare_view import compare_markdown

        return compare_markdown(runs, groups, skipped)
    from cifarctl.analysis.compare import export

    return export(runs, groups, fmt, skipped)
