"""`cifarctl models` (the registry as a table) and `cifarctl summary` (one model, layer
by layer, with receptive fields). torch is imported inside the commands only."""

from __future__ import annotations

import json as _json
from typing import Annotated, Any, Optional

import typer

from cifarctl.cli.app import app, console
from cifarctl.errors import UsageError, did_you_mean


def model_rows(pattern: str = "*") -> list[dict[str, Any]]:
    """One dict per registered model matching ``pattern``: name, aliases, params, ...

    Models are built on the ``meta`` device, so counting params allocates nothing.
    """
    import torch

    from cifarctl.registry import create_model, get_entry, list_models

    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"  # a plain word matches anywhere in the name
    rows = []
    for name in list_models(pattern):
        entry = get_entry(name)
        with torch.device("meta"):
            model = create_model(name)
        rows.append(
            {
                "name": name,
                "aliases": list(entry.aliases),
                "params": sum(p.numel() for p in model.parameters()),
                "assignment": entry.assignment,
                "description": entry.description,
            }
        )
    return rows


def resolve_target(target: str) -> tuple[str, dict[str, Any], str | None]:
    """``(model name, model_args, recipe)`` for a model name/alias or a recipe.

    A ``.yaml``/``.yml`` path is a recipe; otherwise a registered model name wins over a
    bundled recipe of the same name (pass the recipe's path to get its model_args).
    """
    from cifarctl.recipe import bundled_recipes, is_recipe_ref, load_recipe
    from cifarctl.registry import is_model, list_models, resolve_name

    if not target.endswith((".yaml", ".yml")) and is_model(target):
        return resolve_name(target), {}, None
    if is_recipe_ref(target):
        r = load_recipe(target)
        return r.model, dict(r.model_args), target
    known = list_models() + list(bundled_recipes())
    raise UsageError(
        f"unknown model or recipe {target!r}{did_you_mean(target, known)}; "
        "`cifarctl models` and `cifarctl recipes` list them"
    )


def parse_input_size(text: str) -> tuple[int, ...]:
    """'3,32,32' -> (3, 32, 32); UsageError on anything else."""
    try:
        size = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise UsageError(f"--input-size {text!r}: expected C,H,W such as 3,32,32")
    return size


@app.command("models", short_help="List the registered models with their parameter counts.")
def models(
    pattern: Annotated[
        str, typer.Argument(help="Shell-style pattern on model names, e.g. 's8*'; a plain "
                            "word matches anywhere in a name.")
    ] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the registered models: name, parameter count, assignment, description."""
    rows = model_rows(pattern)
    if as_json:
        print(_json.dumps(rows, indent=2))
        return
    if not rows:
        raise UsageError(f"no model matches {pattern!r}; `cifarctl models` lists them all")
    from rich.table import Table

    table = Table(header_style="bold")
    table.add_column("Model", no_wrap=True)
    table.add_column("Params", justify="right", no_wrap=True)
    table.add_column("Assignment")
    table.add_column("Description")
    for r in rows:
        name = r["name"] + (f" [dim]({', '.join(r['aliases'])})[/]" if r["aliases"] else "")
        table.add_row(name, f"{r['params']:,}", r["assignment"], r["description"])
    console.print(table)


@app.command("summary", short_help="Layer table: shapes, params, receptive field and jump.")
def summary(
    target: Annotated[
        str, typer.Argument(help="A model name (`cifarctl models`), or a recipe name or YAML path.")
    ],
    depth: Annotated[
        Optional[int], typer.Option("--depth", min=0, help="Show modules nested at most this deep.")
    ] = None,
    input_size: Annotated[
        str, typer.Option("--input-size", help="Input shape C,H,W (batch 1).")
    ] = "3,32,32",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Layer-by-layer summary: output shapes, params, mult-adds, receptive field and jump."""
    size = parse_input_size(input_size)
    name, model_args, recipe = resolve_target(target)

    from cifarctl.registry import create_model
    from cifarctl.analysis.layers import render_summary, summarize

    model = create_model(name, **model_args)
    try:
        result = summarize(model, input_size=size, depth=depth, name=name)
    except RuntimeError as exc:  # e.g. an input too small for the network's pooling
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UsageError(f"{name}: forward pass failed for input {size}: {first}") from exc
    if as_json:
        d = result.to_dict()
        d.update(recipe=recipe, model_args=model_args)
        print(_json.dumps(d, indent=2))
        return
    if recipe is not None:
        console.print(f"recipe [bold]{recipe}[/]: model {name}, model_args {model_args}")
    render_summary(result, console)
