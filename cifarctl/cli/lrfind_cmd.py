"""`cifarctl lr-find`: the LR range test of a model or recipe, charted and explained."""

from __future__ import annotations

import json as _json
import math
from enum import Enum
from typing import Annotated, Optional

import typer

from cifarctl.cli.app import app, console


class OptimizerName(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"


COLORS = {"steepest": "red", "valley": "green", "min_div_10": "yellow"}


class StepMode(str, Enum):
    exp = "exp"
    linear = "linear"


def resolve_recipe(ref: str, overrides: list[str]):
    """A recipe file / bundled name, or a model name (its default recipe), with --set applied."""
    from cifarctl.errors import UsageError, did_you_mean
    from cifarctl.recipe import (apply_overrides, bundled_recipes, default_recipe_for_model, is_recipe_ref,
                                 load_recipe, validate_dict)
    from cifarctl.registry import is_model, list_models

    if is_recipe_ref(ref):
        return load_recipe(ref, tuple(overrides))
    if is_model(ref):
        recipe = default_recipe_for_model(ref)
        if not overrides:
            return recipe
        raw = apply_overrides(recipe.to_dict(), overrides)
        return validate_dict(raw, f"default recipe for {ref} (with --set {' '.join(overrides)})")
    hint = did_you_mean(ref, list(list_models()) + list(bundled_recipes()))
    raise UsageError(f"{ref!r} is neither a model nor a recipe{hint}; `cifarctl models` and "
                     "`cifarctl recipes` list them")


def sweep_settings(recipe, start_lr, end_lr, num_iter, step_mode) -> dict:
    """Options given on the command line, else the recipe's scheduler.lr_find, else defaults."""
    from cifarctl.recipe import LRFind

    base = getattr(recipe.scheduler, "lr_find", None) or LRFind()
    return {
        "start_lr": base.start_lr if start_lr is None else start_lr,
        "end_lr": base.end_lr if end_lr is None else end_lr,
        "num_iter": base.num_iter if num_iter is None else num_iter,
        "step_mode": base.step_mode if step_mode is None else step_mode,
    }


def chart(result, width: int = 80, height: int = 18, colorless: bool = False) -> str:
    """Smoothed loss against lr (log x) with the suggestions as vertical lines (plotext 6).

    plotext 6.1's own log scale misplaces vertical lines and breaks with custom ticks
    (seen here), so the x values are log10(lr) on a linear axis with 1e-N tick labels.
    """
    import plotext as plt

    from cifarctl.lrfind import LABELS, SUGGESTIONS

    pts = [(math.log10(lr), v) for lr, v in zip(result.lr, result.smoothed_loss) if math.isfinite(v)]
    if len(pts) < 2:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    lo, hi = min(ys), max(ys)
    if ys[0] > 0:
        hi = min(hi, 2 * ys[0])  # a diverged tail would squash the rest
    f = plt.figure
    f.clear()
    s = f.signal(xs, [min(y, hi) for y in ys])
    s.lines()
    s.label("smoothed loss")
    f.draw(s)
    for k in SUGGESTIONS:
        v = result.suggestions.get(k)
        if v is not None:
            f.line(math.log10(v), orientation="v", pixel=COLORS[k])
    f.legend(active=False)  # it would cover the curve; `chart_key` goes below instead
    first, last = math.floor(min(xs)), math.ceil(max(xs))
    step = max(1, math.ceil((last - first) / 8))
    ticks = list(range(first, last + 1, step))
    f.ruler(0).ticks(ticks, [f"1e{t}" if t else "1" for t in ticks])
    f.label("learning rate", axis="x")
    f.title("LR range test: smoothed loss" + ("" if result.conclusive else " (inconclusive)"))
    f.plot_size(width, height)
    return f.build().string(colorless=colorless)


def chart_key(result) -> str:
    """Rich markup naming the chart's vertical lines, in their colours."""
    from cifarctl.lrfind import LABELS, SUGGESTIONS

    parts = []
    for k in SUGGESTIONS:
        v = result.suggestions.get(k)
        if v is not None:
            star = " (recommended)" if k == result.recommended_by else ""
            parts.append(f"[{COLORS[k]}]│[/] {LABELS[k]} {v:.1e}{star}")
    return "   ".join(parts)


def suggestions_table(result):
    """A rich table: each suggestion, its lr, its rule, and which one is recommended."""
    from rich.table import Table

    from cifarctl.lrfind import LABELS, SUGGESTIONS

    rules = {
        "valley": "halfway down the longest descent",
        "steepest": "where the loss falls fastest",
        "min_div_10": "lowest loss's lr / 10",
    }
    title = "Suggestions" if result.conclusive else "Suggestions (inconclusive sweep: not to be trusted)"
    table = Table(title=title, title_justify="left")
    table.add_column("suggestion")
    table.add_column("lr", justify="right")
    table.add_column("rule")
    for k in SUGGESTIONS:
        v = result.suggestions.get(k)
        rec = k == result.recommended_by
        table.add_row(LABELS[k] + (" (recommended)" if rec else ""),
                      "[dim]unavailable[/]" if v is None else f"{v:.2e}", rules[k],
                      style="bold green" if rec else None if result.conclusive else "dim")
    return table


@app.command("lr-find", short_help="LR range test: chart the loss, suggest a max_lr.")
def lr_find(
    target: Annotated[str, typer.Argument(metavar="MODEL|RECIPE",
                                          help="A model name (its default recipe) or a recipe name/YAML path.")],
    data: Annotated[Optional[str], typer.Option("--data", help="Data source: a path, 'cifar10' or 'synthetic'.")] = None,
    optimizer: Annotated[Optional[OptimizerName], typer.Option("--optimizer", help="Override the recipe's optimizer.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", min=0, help="Override the weight decay.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Override the batch size.")] = None,
    start_lr: Annotated[Optional[float], typer.Option("--start-lr", help="First lr (default: the recipe's scheduler.lr_find, else 1e-7).")] = None,
    end_lr: Annotated[Optional[float], typer.Option("--end-lr", help="Last lr (default: the recipe's, else 10).")] = None,
    num_iter: Annotated[Optional[int], typer.Option("--num-iter", min=2, help="Steps of the sweep (default: the recipe's, else 100).")] = None,
    step_mode: Annotated[Optional[StepMode], typer.Option("--step-mode", help="lr growth (default: the recipe's, else exp).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    runs_dir: Annotated[str, typer.Option("--runs-dir", help="Results go to RUNS_DIR/lr-find/<name>-<time>/.")] = "runs",
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON only.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Override a recipe key (repeatable), e.g. --set data.train_subset=5000.")] = None,
) -> None:
    """Run the LR range test: raise the lr step by step, chart the loss, suggest an lr.

    Suggests: valley (recommended), steepest gradient, minimum/10, all from before the
    loss diverges and before its lowest point; the sweep stops when the smoothed loss
    passes 4x its best. A sweep whose loss never falls meaningfully is reported as
    inconclusive, with what to try, and recommends nothing.
    Nothing is trained: the model and optimizer are restored afterwards.
    Off a terminal a plain progress line every ~10 %; Ctrl-C stops it at once (exit 130).
    Writes lr_find.json and lr_find.png to RUNS_DIR/lr-find/NAME-TIME/.
    """
    from cifarctl.builders import resolve_device
    from cifarctl.lrfind import make_out_dir, run_lr_find, write_lr_find
    from cifarctl.ui.interrupt import answer_interrupts
    from cifarctl.ui.sweep_progress import SweepProgress, device_label

    recipe = resolve_recipe(target, list(set_ or ()))
    sweep = sweep_settings(recipe, start_lr, end_lr, num_iter,
                           step_mode.value if step_mode is not None else None)
    dev = resolve_device(device)
    show = not json
    if show:
        opt = optimizer.value if optimizer is not None else recipe.optimizer.name
        console.print(f"lr-find [bold]{recipe.name}[/] ({recipe.model}, {opt}, batch "
                      f"{batch_size or recipe.data.batch_size}) on {device_label(dev)}: {sweep['num_iter']} "
                      f"steps, lr {sweep['start_lr']:.0e} → {sweep['end_lr']:g} ({sweep['step_mode']})",
                      highlight=False)

    with answer_interrupts("the LR range test; nothing is written"), \
            SweepProgress(console, sweep["num_iter"], enabled=show) as progress:
        result = run_lr_find(recipe, data_source=data, device=dev,
                             optimizer=optimizer.value if optimizer is not None else None,
                             weight_decay=weight_decay, batch_size=batch_size, progress=progress, **sweep)
        progress.finished(result)
    out_dir = make_out_dir(runs_dir, recipe.name)
    json_path, png_path = write_lr_find(result, out_dir)

    if json:
        print(_json.dumps({**result.to_dict(), "out_dir": str(out_dir), "files": {
            "json": str(json_path), "png": str(png_path)}}, indent=2))
        return
    width = max(40, min(console.width, 100))
    text = chart(result, width=width, colorless=not console.is_terminal)
    if text:
        if console.is_terminal:
            from rich.text import Text

            console.print(Text.from_ansi(text))
        else:
            print(text)
        console.print(chart_key(result), highlight=False)
    console.print(suggestions_table(result))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if result.recommended is not None:
        console.print(f"recommended lr [bold]{result.recommended:.2e}[/] — {result.reason}", highlight=False)
    elif not result.conclusive:
        console.print(f"[bold yellow]inconclusive:[/] {result.inconclusive_reason}; no lr is recommended "
                      "(the suggestions above are not to be trusted)", highlight=False)
        if result.advice:
            console.print("try: " + "; ".join(result.advice), highlight=False)
    else:
        console.print(f"[bold red]no lr to recommend[/]: {result.reason}", highlight=False)
    console.print(f"{len(result.lr)} steps in {result.seconds:.1f}s; wrote {out_dir}/ "
                  "(lr_find.json, lr_find.png)", highlight=False, soft_wrap=True)
