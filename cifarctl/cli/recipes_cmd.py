"""`cifarctl recipes`: the bundled recipes, or one recipe resolved and validated."""

from __future__ import annotations

import json as _json
from typing import Annotated, Optional

import typer

from cifarctl.cli.app import app, console


def _target_text(t) -> str:
    parts = []
    if t.min_test_acc is not None:
        parts.append(f"≥ {t.min_test_acc:.2f} %")
    if t.max_epochs is not None:
        parts.append(f"≤ {t.max_epochs} ep")
    if t.max_params is not None:
        parts.append(f"< {t.max_params:,} params")
    return ", ".join(parts) or "-"


@app.command("recipes", short_help="List the bundled recipes, or validate and show one.")
def recipes(
    recipe: Annotated[
        Optional[str],
        typer.Argument(help="A bundled recipe name or a YAML path: print it resolved (defaults filled in)."),
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE",
                     help="Override a key (repeatable), e.g. --set data.batch_size=256."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the bundled recipes (name, model, epochs, target), or validate and show one."""
    from cifarctl.recipe import bundled_recipes, load_recipe

    if recipe is not None:
        r = load_recipe(recipe, tuple(set_ or ()))
        if json:
            print(_json.dumps(r.to_dict(), indent=2))
        else:
            print(r.to_yaml(), end="")
        return
    loaded = {name: load_recipe(name) for name in bundled_recipes()}
    rows = []
    for name, r in loaded.items():
        rows.append(
            {
                "name": name,
                "assignment": r.assignment,
                "model": r.model,
                "epochs": r.epochs,
                "batch_size": r.data.batch_size,
                "optimizer": r.optimizer.name,
                "scheduler": r.scheduler.name,
                "target": r.target.model_dump(),
                "description": r.description,
            }
        )
    if json:
        print(_json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="Bundled recipes", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("assignment")
    table.add_column("model", no_wrap=True)
    table.add_column("epochs", justify="right")
    table.add_column("batch", justify="right")
    table.add_column("optimizer", overflow="fold")
    table.add_column("target", overflow="fold")
    for row, r in zip(rows, loaded.values()):
        table.add_row(
            row["name"], row["assignment"], row["model"], str(row["epochs"]), str(row["batch_size"]),
            f"{row['optimizer']}/{row['scheduler']}", _target_text(r.target),
        )
    console.print(table)
    console.print("Train one with [bold]cifarctl train NAME[/]; show one resolved with [bold]cifarctl recipes NAME[/].")
