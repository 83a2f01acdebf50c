"""`cifarctl recipes`: the bundled recipes, or one recipe resolved and validated."""

from __future__ import annotations

import json as _json
from typing import Annotated, Optional

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import FormatOption, OutputFormat, app, check_set, console, output_format


@app.command("recipes", short_help="List the bundled recipes, or validate and show one.")
def recipes(
    recipe: Annotated[
        Optional[str],
        typer.Argument(help="A bundled recipe name or a YAML path: print it resolved (defaults filled in).",
                       autocompletion=complete.complete_recipe),
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE", callback=check_set, autocompletion=complete.complete_set,
                     help="Override a key (repeatable), e.g. --set data.batch_size=256."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON (same as --format json).")] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List the bundled recipes (name, model, epochs, target), or validate and show one."""
    from cifarctl.bundled import bundled_recipes
    from cifarctl.recipe.load import load_recipe, recipe_rows

    json = output_format(fmt, json) == "json"

    if recipe is not None:
        r = load_recipe(recipe, tuple(set_ or ()))
        if json:
            print(_json.dumps(r.to_dict(), indent=2))
        elif fmt == OutputFormat.md:
            print(f"```yaml\n{r.to_yaml().rstrip()}\n```")
        else:
            print(r.to_yaml(), end="")
        return
    loaded = {name: load_recipe(name) for name in bundled_recipes()}
    if json:
        print(_json.dumps(recipe_rows(loaded), indent=2))
        return
    from cifarctl.ui.tables import show_recipes

    show_recipes(console, loaded, fmt.value)
