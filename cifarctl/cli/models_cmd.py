"""``cifarctl models``: the model registry as a table."""

from __future__ import annotations

import json as _json
from typing import Annotated

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import FormatOption, OutputFormat, app, console, output_format
from cifarctl.errors import UsageError


@app.command("models", short_help="List the registered models with their parameter counts.")
def models(
    pattern: Annotated[
        str, typer.Argument(help="Shell-style pattern on model names, e.g. 's8*'; a plain "
                            "word matches anywhere in a name.", autocompletion=complete.complete_model)
    ] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (same as --format json).")] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List the registered models: name, parameter count, assignment, description."""
    from cifarctl.analysis.layers import model_rows

    rows = model_rows(pattern)
    fmt = output_format(fmt, as_json)
    if fmt == "json":
        print(_json.dumps(rows, indent=2))
        return
    if not rows:
        raise UsageError(f"no model matches {pattern!r}; `cifarctl models` lists them all")
    from cifarctl.ui.tables import show_models

    show_models(console, rows, fmt)
