"""``cifarctl report``: the assignment write-up (README.md + images/) from run folders."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifarctl.cli.app import app, console, err_console


@app.command("report", short_help="Write an assignment write-up (README.md + images) from runs.")
def report(
    run_dirs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR...", help="Run folders, or folders of runs; several runs get a comparison first.",
        show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Report folder (default: reports/<recipe>-<time>/).", show_default=False)] = None,
    data: Annotated[Optional[str], typer.Option(
        "--data", metavar="PATH", help="Data source for the samples, evaluation and misclassified images "
        "(default: the run's own, else $CIFARCTL_DATA).", show_default=False)] = None,
    which: Annotated[str, typer.Option("--which", help="Checkpoint to evaluate: best or last.")] = "best",
    gradcam: Annotated[bool, typer.Option("--gradcam/--no-gradcam", help="Grad-CAM beside each misclassified image.")] = False,
    n: Annotated[int | None, typer.Option("--n", min=1, max=100, help="Misclassified images to show "
                                          "[default: the assignment's grid (S8: 5x2), else 25].",
                                          show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Write README.md and images/ for run folders: target and result, model and receptive
    field, data and augmentation samples, the training log and curves, per-class accuracy
    and confusion matrix, misclassified images, an analysis and how to reproduce it.

    Markdown with relative image links: push the folder to GitHub as it is. Without the
    test data, the data, evaluation and misclassified sections say so; the rest is written.
    """
    from cifarctl.analysis.evidence import gather_runs, read_runs, sweep_spec
    from cifarctl.ui.render import print_line
    from cifarctl.ui.report_folder import prepare_out_dir, write_report

    def say(line: str) -> None:
        print_line(err_console, line, "dim")

    start = time.perf_counter()
    runs, skipped = read_runs(run_dirs)
    out_dir = prepare_out_dir(out, runs)  # before any run is evaluated
    evidence = gather_runs(runs, skipped, data=data, which=which, n=n, gradcam=gradcam, device=device, say=say)
    several = len(runs) > 1  # decided before any is skipped: the layout (headings, image names) stays
    rep = write_report(evidence, out_dir, skipped, several=several, sweep=sweep_spec(evidence) if several else None)
    rep.seconds = time.perf_counter() - start
    for p, why in rep.skipped:
        print_line(err_console, f"skipped {p}: {why}", "yellow")
    for w in rep.warnings:
        print_line(err_console, f"warning: {w}", "yellow")
    for r in rep.runs:
        acc = rep.accuracy.get(r.name)
        best = "-" if r.best_acc is None else f"{r.best_acc:.2f}%"
        evaluated = "" if acc is None else f", evaluated {acc:.2f}%"
        print_line(console, f"{r.name}: {r.status}, {r.epochs} epoch{'s' if r.epochs != 1 else ''}, best {best}"
                            f"{evaluated}, target {rep.verdicts.get(r.name, '-')}")
    print_line(console, f"wrote {rep.path} and {len(list(rep.path.parent.joinpath('images').glob('*.png')))} "
                        f"images in {rep.seconds:.1f} s")
