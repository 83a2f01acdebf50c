"""`cifarctl lr-find`: the LR range test of a model or recipe, charted and explained."""

from __future__ import annotations

import json as _json
import math
from enum import Enum
from typing import Annotated, Optional

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import app, check_name, check_set, console


class OptimizerName(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"


class StepMode(str, Enum):
    exp = "exp"
    linear = "linear"


@app.command("lr-find", short_help="LR range test: chart the loss, suggest a max_lr.")
def lr_find(
    target: Annotated[str, typer.Argument(metavar="MODEL|RECIPE",
                                          help="A recipe name or YAML path, or a model name (its registered "
                                          "arguments, trained as its bundled recipe); a recipe wins a shared name.",
                                          autocompletion=complete.complete_model_or_recipe)],
    data: Annotated[Optional[str], typer.Option("--data", help="Data source: a path, 'cifar10' or 'synthetic'.")] = None,
    optimizer: Annotated[Optional[OptimizerName], typer.Option("--optimizer", help="Override the recipe's optimizer.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", min=0, help="Override the weight decay.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Override the batch size.")] = None,
    start_lr: Annotated[Optional[float], typer.Option("--start-lr", help="First lr (default: the recipe's scheduler.lr_find, else 1e-7).")] = None,
    end_lr: Annotated[Optional[float], typer.Option("--end-lr", help="Last lr (default: the recipe's, else 10).")] = None,
    num_iter: Annotated[Optional[int], typer.Option("--num-iter", min=2, help="Steps of the sweep (default: the recipe's, else 100).")] = None,
    step_mode: Annotated[Optional[StepMode], typer.Option("--step-mode", help="lr growth (default: the recipe's, else exp).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.",
                                        autocompletion=complete.complete_device)] = "auto",
    runs_dir: Annotated[str, typer.Option("--runs-dir", help="Results go to RUNS_DIR/lr-find/<name>-<time>/.")] = "runs",
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON only.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE", callback=check_set, autocompletion=complete.complete_set,
        help="Override a recipe key (repeatable), e.g. --set data.train_subset=5000.")] = None,
) -> None:
    """Run the LR range test (torch-lr-finder): raise the lr step by step, chart the loss, suggest an lr.

    Suggests: valley (recommended), steepest gradient, minimum/10, all from before the
    loss diverges and before its lowest point; the sweep stops when the smoothed loss
    passes 4x its best. A sweep whose loss never falls meaningfully is reported as
    inconclusive, with what to try, and recommends nothing.
    Nothing is trained: the model and optimizer are restored afterwards.
    Before the first step it says how many steps and about how long (a timed pass); off a
    terminal a plain progress line every ~10 %; Ctrl-C stops it at once (exit 130).
    Writes lr_find.json and lr_find.png to RUNS_DIR/lr-find/NAME-TIME/.
    """
    check_name(target, models=True)
    import sys

    from rich.console import Console

    from cifarctl.errors import UsageError
    from cifarctl.recipe.load import resolve_model_or_recipe
    from cifarctl.training.builders import resolve_device
    from cifarctl.training.lrfind import lr_find_recipe, make_out_dir, run_lr_find, sweep_settings, write_lr_find
    from cifarctl.ui.interrupt import answer_interrupts
    from cifarctl.ui.sweep_progress import SweepProgress, device_label

    if weight_decay is not None and not math.isfinite(weight_decay):  # min=0 lets inf through
        raise UsageError(f"lr-find: --weight-decay: must be a finite number (got {weight_decay!r})")
    resolved = resolve_model_or_recipe(target, list(set_ or ()))
    opt = optimizer.value if optimizer is not None else None
    recipe = lr_find_recipe(resolved.recipe, opt, weight_decay, batch_size)  # the options, checked here
    sweep = sweep_settings(recipe, start_lr, end_lr, num_iter, step_mode.value if step_mode is not None else None)
    dev = resolve_device(device)
    show = not json
    if show:
        from cifarctl.ui.render import print_line

        print_line(console, f"lr-find {resolved.describe()}")
        print_line(console, f"{opt or recipe.optimizer.name}, batch {batch_size or recipe.data.batch_size} on "
                            f"{device_label(dev)}: {sweep['num_iter']} steps, lr {sweep['start_lr']:.0e} → "
                            f"{sweep['end_lr']:g} ({sweep['step_mode']})")

    bound = Console(file=sys.stdout)  # the sweep sends sys.stdout to a buffer (sweep_progress.py)
    with answer_interrupts("the LR range test; nothing is written"), \
            SweepProgress(bound, sweep["num_iter"], enabled=show) as progress:
        result = run_lr_find(recipe, data_source=data, device=dev, progress=progress,
                             on_start=progress.planned if show else None, **sweep)
        progress.finished(result)
    out_dir = make_out_dir(runs_dir, recipe.name)
    json_path, png_path = write_lr_find(result, out_dir)
    if json:
        print(_json.dumps({**result.to_dict(), "out_dir": str(out_dir), "files": {
            "json": str(json_path), "png": str(png_path)}}, indent=2))
        return
    from cifarctl.ui.tables import show_lr_find

    show_lr_find(console, result, out_dir)
