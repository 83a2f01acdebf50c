"""``cifarctl train``: a thin wrapper over :func:`cifarctl.training.run.run_training`."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import app, check_name, check_set, console, state


@app.command("train", short_help="Train a recipe into a run folder (or --resume one).")
def train(
    ctx: typer.Context,
    recipe: Annotated[Optional[str], typer.Argument(
        help="A bundled recipe name (`cifarctl recipes`) or a recipe .yaml path; optional with --resume.",
        show_default=False, autocompletion=complete.complete_recipe)] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE", callback=check_set, autocompletion=complete.complete_set,
        help="Override a recipe key (repeatable), e.g. --set epochs=2 --set data.batch_size=256.")] = None,
    data: Annotated[Optional[str], typer.Option(
        "--data", metavar="PATH", help="Data source: a CIFAR-10 folder/archive, 'cifar10' or 'synthetic'.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.",
                                        autocompletion=complete.complete_device)] = "auto",
    runs_dir: Annotated[str, typer.Option("--runs-dir", metavar="DIR", help="Where run folders go.")] = "runs",
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Run folder name (default: <recipe>-<YYYYmmdd-HHMMSS>).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=2**64 - 1,
                                                   help="Override the recipe's seed (0 to 2**64 - 1).")] = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", metavar="RUN_DIR", help="Continue a run from its checkpoints/last.pt, in the same folder.",
        autocompletion=complete.complete_resume)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="With --resume: accept a recipe that differs from the run's.")] = False,
    break_rules: Annotated[bool, typer.Option(
        "--break-rules", help="Train a recipe that breaks its assignment's rules (`cifarctl summary RECIPE` "
        "lists them); summary.json records what it broke.")] = False,
    nproc: Annotated[Optional[int], typer.Option(
        "--nproc", min=1, metavar="N",
        help="Data-parallel on N processes (one per GPU; gloo on CPU): re-runs this command under "
        "torchrun, like `torchrun --nproc_per_node N -m cifarctl train ...`.")] = None,
) -> None:
    """Train a recipe: one line per epoch (a live dashboard on a terminal), a run folder with
    metrics, checkpoints and curves, and a PASS/FAIL verdict against the recipe's target.

    Exit codes: 0 completed (even when the target is missed: the verdict is printed),
    2 bad recipe/option, 3 diverged (NaN/inf loss), 4 negative loss, 130 SIGINT / 143
    SIGTERM (last.pt saved: continue with --resume), 1 any other failure; with --nproc,
    rank 0's code (torchrun's 1 when rank 0 could not leave one).
    """
    check_name(recipe)
    from contextlib import nullcontext

    from cifarctl.cli.launch import record_exit
    from cifarctl.errors import CifarctlError
    from cifarctl.training.distributed import env_rank, process_group
    from cifarctl.training.run import TrainingFailed, plan_run, run_training
    from cifarctl.ui.train_view import TrainView

    main = env_rank() == 0  # under torchrun only rank 0 prints, errors included
    try:
        plan = plan_run(recipe, overrides=set_ or [], seed=seed, data=data, resume=resume, force=force)
        broken = _check_rules(plan.recipe, recipe, break_rules) if resume is None else []
        if nproc is not None and nproc > 1:
            from cifarctl.cli.launch import command_args, launch

            raise typer.Exit(launch(nproc, command_args(ctx)))
        with process_group(device), (TrainView(console) if main else nullcontext()) as view:
            run_training(plan, device=device, runs_dir=runs_dir, name=name, view=view,
                         argv=list(sys.argv), progress=True, broken_rules=broken)
    except CifarctlError as exc:
        if not main:
            raise typer.Exit(exc.exit_code) from None
        record_exit(exc.exit_code)  # for --nproc: torchrun itself exits 1
        if isinstance(exc, TrainingFailed) and state.get("debug") and exc.__cause__ is not None:
            raise exc.__cause__
        raise


def _check_rules(recipe, named: str, break_rules: bool) -> list[str]:
    """The assignment's structural rules, checked before anything is loaded: a break is
    exit 2 naming the rule and the layer, unless --break-rules (then it is recorded)."""
    from cifarctl.analysis.rules import broken, broken_line, check_rules
    from cifarctl.errors import UsageError

    rows = check_rules(recipe)
    if not broken(rows):
        return []
    if not break_rules:
        name = recipe.rules.assignment or "its assignment"
        raise UsageError(f"{named}: breaks the rules of {name}: {broken_line(rows)}; change the recipe, or "
                         "train anyway with --break-rules (the run records what it broke)")
    return [f"{x['rule']}: required {x['required']}, measured {x['measured']}" for x in broken(rows)]
