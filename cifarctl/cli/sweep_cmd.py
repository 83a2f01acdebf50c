"""``cifarctl sweep``: grids over recipe values and seeds, or sampled trials, on Optuna."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import app, check_name, console
from cifarctl.training.sweep import MAX_GRID, MAX_WORKERS


@app.command("sweep", short_help="Many runs: a grid of values and seeds, or sampled trials (Optuna).")
def sweep(
    recipes: Annotated[list[str], typer.Argument(help="Bundled recipe names or .yaml paths: one axis of the grid.",
                                                 autocompletion=complete.complete_recipe)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The sweep folder: its study, and a run folder per "
                                      "trial in OUT/runs/. The same command again continues it.")],
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=V1,V2|KEY=LOW..HIGH", autocompletion=complete.complete_set,
        help="A grid over values (--set optimizer.lr=0.02,0.05), or a range for --sampler random|tpe "
             "(--set optimizer.lr=log:0.01..0.3, int:LOW..HIGH); a single value applies to every trial.")] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="A grid over seeds, e.g. 1,2,3.")] = None,
    trials: Annotated[Optional[int], typer.Option("--trials", min=1, max=MAX_GRID,
                                                 help="Sampled trials (with --sampler random|tpe).")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="grid (every combination), random or tpe.")] = "grid",
    workers: Annotated[int, typer.Option("--workers", min=1, max=MAX_WORKERS, help="Trials at once: on the CPU they "
                                         "share the cores; on CUDA give --gpus.")] = 1,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="GPU ids, one worker each (CUDA_VISIBLE_DEVICES "
                                                "pinned), e.g. 0,1,2,3.")] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help="An Optuna storage URL (a database) instead "
                                                   "of OUT/study.journal: machines sharing it work one sweep.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", metavar="PATH", help="Data source for every trial.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Device for every trial (default: auto).")] = None,
) -> None:
    """Run many trainings as one study: every combination of --set values, recipes and
    --seeds (or --trials sampled by random or TPE), each an ordinary run folder in OUT/runs.

    Stop it (Ctrl-C, or even kill -9) and run the same command again: finished trials are
    kept, an interrupted one resumes from its checkpoint, nothing is trained twice; a
    changed grid is refused. At the end: the compare table grouped by setting (mean ± std
    over seeds) and the best setting; `cifarctl compare OUT` and `cifarctl report OUT`
    work on the folder. Exit code 1 when a trial failed.
    """
    from cifarctl.training.sweep import Spec, parse_axis, parse_gpus, parse_seeds, run_sweep, set_value
    from cifarctl.ui.sweep_view import SweepView

    for r in recipes:
        check_name(r)
    axes = [parse_axis(s) for s in set_ or ()]
    fixed = [f"{a.key}={set_value(a.values[0])}" for a in axes if not a.is_range and len(a.values) == 1]
    extra = [x for f in fixed for x in ("--set", f)]
    extra += ["--data", data] if data else []
    extra += ["--device", device] if device else []
    gpu_ids = parse_gpus(gpus) if gpus is not None else None
    spec = Spec(recipes=list(recipes), axes=[a for a in axes if a.is_range or len(a.values) > 1],
                seeds=parse_seeds(seeds), sampler=sampler, trials=trials, extra=extra)
    failed = 0
    with SweepView(console, out / "runs") as view:
        for ev in run_sweep(out, spec, workers=workers, gpus=gpu_ids, storage=storage):
            if ev["type"] == "done":
                failed = ev["failed"]
            else:
                view.handle(ev)
    _summary(out)
    if failed:
        raise typer.Exit(1)


def _summary(out: Path) -> None:
    """The compare table of the sweep's runs, and the best setting."""
    from cifarctl.analysis.compare import best_setting, collect_runs, curves, group_runs, sort_runs
    from cifarctl.ui.compare_view import show_compare
    from cifarctl.ui.render import print_line

    runs, skipped = collect_runs([out / "runs"])
    if not runs:
        return
    runs = sort_runs(runs, "best")
    groups = group_runs(runs)
    show_compare(console, runs, groups, skipped, curves(runs, groups, "test_acc", False), "test_acc")
    best = best_setting(groups)
    if best is not None:
        group, value, split = best
        print_line(console, f"best setting: {group.label} ({value:.2f}% mean best {split} accuracy, "
                            f"{group.n} run(s); diverged and failed runs left out)", "bold")
