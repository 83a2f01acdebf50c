"""``cifarctl eval``: accuracy, per-class table, confusion matrix, most-confused pairs."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import FormatOption, OutputFormat, RunTarget, app, console, output_format


@app.command("eval", short_help="Accuracy, per-class table, confusion matrix of a run.")
def eval_(
    target: RunTarget,
    data: Annotated[Optional[str], typer.Option(
        "--data", metavar="PATH", help="Data source instead of the one the run used.")] = None,
    split: Annotated[str, typer.Option("--split", help="test or train.")] = "test",
    tta: Annotated[Optional[str], typer.Option(
        "--tta", metavar="none|flip|flip_translate",
        help="none, flip (mean with the mirror image) or flip_translate (airbench's 6 views); "
        "default: the recipe's eval_tta.", show_default=False)] = None,
    which: Annotated[str, typer.Option("--which", help="Checkpoint of a run folder: best (its best test accuracy) or last (the latest saved).")] = "best",
    as_json: Annotated[bool, typer.Option("--json", help="Print eval.json to stdout (same as --format json).")] = False,
    fmt: FormatOption = OutputFormat.table,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", autocompletion=complete.complete_device)] = "auto",
) -> None:
    """Evaluate a checkpoint on the run's data and write eval.json beside it.

    A run folder's best checkpoint by default (--which last: the latest). Without --data,
    --split, --tta it reproduces exactly the test accuracy metrics.jsonl logged for the
    checkpoint's epoch (same data, batch size and precision): by default the best epoch's.
    The per-image predictions are kept in eval-predictions-<split>.npz: the next eval,
    misclassified or report of the same checkpoint on the same data reads them back.
    """
    from cifarctl.analysis.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(target, data=data, split=split, tta=tta, which=which, device=device)
    fmt = output_format(fmt, as_json)
    if fmt == "json":
        typer.echo(json.dumps(result, indent=2))
        return
    from cifarctl.ui.tables import show_eval

    show_eval(console, result, fmt)
    if result.get("warning"):
        from cifarctl.cli.app import err_console
        from cifarctl.ui.render import print_line

        print_line(err_console, f"warning: {result['warning']}", "yellow")
    if result.get("cached"):
        from rich.text import Text

        from cifarctl.cli.app import err_console

        err_console.print(Text(f"(predictions read back from eval-predictions-{result['split']}.npz, "
                               "kept by an earlier pass)", style="dim"), soft_wrap=True)
