"""``cifarctl summary``: one model, layer by layer, with receptive fields."""

from __future__ import annotations

import json as _json
from typing import Annotated, Optional

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import FormatOption, OutputFormat, app, check_name, console, output_format
from cifarctl.errors import UsageError


MAX_CHANNELS, MAX_SIDE = 64, 1024  # 3,20000,20000 took 73 s and 9.9 GB before failing


def parse_input_size(text: str) -> tuple[int, ...]:
    """'3,32,32' -> (3, 32, 32); UsageError on anything else."""
    try:
        size = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise UsageError(f"--input-size {text!r}: expected C,H,W such as 3,32,32")
    if size[0] > MAX_CHANNELS or max(size[1:]) > MAX_SIDE:
        raise UsageError(f"--input-size {text!r}: at most {MAX_CHANNELS} channels and {MAX_SIDE} pixels a side "
                         "(the summary runs the model on one such image)")
    return size


@app.command("summary", short_help="Layer table: shapes, params, receptive field and jump.")
def summary(
    target: Annotated[
        str, typer.Argument(metavar="MODEL|RECIPE", help="A recipe name or YAML path (its model and "
                            "model_args), or a model name (`cifarctl models`); a recipe wins a shared name.",
                            autocompletion=complete.complete_model_or_recipe)
    ],
    depth: Annotated[
        Optional[int], typer.Option("--depth", min=0, help="Show modules nested at most this deep.")
    ] = None,
    input_size: Annotated[
        Optional[str], typer.Option("--input-size", help="Input shape C,H,W (batch 1); at most 64 channels, 1024 "
                                    "pixels a side. Default: 3 and the recipe's data.image_size (32).",
                                    show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (same as --format json).")] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Layer-by-layer summary: output shapes, params, mult-adds, receptive field and jump."""
    check_name(target, models=True)
    from cifarctl.analysis.layers import summarize_recipe
    from cifarctl.analysis.rules import check_rules
    from cifarctl.recipe.load import resolve_model_or_recipe
    from cifarctl.training.builders import build_model

    size = parse_input_size(input_size) if input_size is not None else None
    resolved = resolve_model_or_recipe(target)
    model = build_model(resolved.recipe)  # once: the table and the rules measure the same model
    result = summarize_recipe(resolved.recipe, input_size=size, depth=depth, model=model)
    rules = check_rules(resolved.recipe, model=model) if resolved.kind == "recipe" else []
    fmt = output_format(fmt, as_json)
    if fmt == "json":
        d = result.to_dict()
        d.update(recipe=target if resolved.kind == "recipe" else None,
                 model_args=dict(resolved.recipe.model_args),
                 rules=[{k: r[k] for k in ("rule", "required", "measured", "ok")} for r in rules])
        print(_json.dumps(d, indent=2))
        return
    from cifarctl.ui.tables import rules_table, show_summary

    if fmt == "table":
        from cifarctl.ui.render import print_line

        print_line(console, resolved.describe(settings=False))
    show_summary(console, result, fmt)
    if rules:
        from cifarctl.ui.render import print_table

        print_table(console, rules_table(resolved.recipe, rules), fmt)
