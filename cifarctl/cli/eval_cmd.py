"""``cifarctl eval``: accuracy, per-class table, confusion matrix, most-confused pairs."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from cifarctl.cli.app import app, console


@app.command("eval", short_help="Accuracy, per-class table, confusion matrix of a run.")
def eval_(
    target: Annotated[str, typer.Argument(
        metavar="RUN_DIR|CHECKPOINT", help="A run folder (uses checkpoints/<which>.pt) or a .pt file.",
        show_default=False)],
    data: Annotated[Optional[str], typer.Option(
        "--data", metavar="PATH", help="Data source instead of the one the run used.")] = None,
    split: Annotated[str, typer.Option("--split", help="test or train.")] = "test",
    tta: Annotated[Optional[str], typer.Option(
        "--tta", help="none, flip (mean with the mirror image) or flip_translate (airbench's 6 views); "
        "default: the recipe's eval_tta.", show_default=False)] = None,
    which: Annotated[str, typer.Option("--which", help="best or last checkpoint of a run folder.")] = "last",
    as_json: Annotated[bool, typer.Option("--json", help="Print eval.json to stdout instead of tables.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Evaluate a checkpoint on the run's data and write eval.json beside it.

    Without --data, --split, --tta it reproduces the last epoch's test accuracy of
    metrics.jsonl exactly (same data, batch size and precision).
    """
    from cifarctl.analysis.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(target, data=data, split=split, tta=tta, which=which, device=device)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    render(result)


def _cell_style(count: int, row_total: int, diagonal: bool) -> str:
    """Background intensity by the cell's share of its true class."""
    if count == 0 or row_total == 0:
        return ""
    share = count / row_total
    level = 0.15 + 0.85 * (share if diagonal else min(1.0, share * 3))
    if diagonal:
        rgb = (int(20 * level), int(40 + 140 * level), int(20 * level))
    else:
        rgb = (int(40 + 170 * level), int(20 * level), int(20 * level))
    fg = "white" if level > 0.35 else "grey85"
    return f"{fg} on rgb({rgb[0]},{rgb[1]},{rgb[2]})"


_SHORT = {"airplane": "plane", "automobile": "car"}


def _short(name: str) -> str:
    return _SHORT.get(name, name[:5])


def render(result: dict) -> None:
    from rich import box
    from rich.table import Table

    tta = "" if result["tta"] == "none" else f", TTA {result['tta']}"
    where = f"epoch {result['epoch']}" + (" (mid-epoch)" if result.get("mid_epoch") else "")
    console.print(f"[bold]{result['model']}[/] {result['checkpoint']} ({where}) on the {result['split']} split "
                  f"of {result['data']}: {result['images']:,} images{tta}", soft_wrap=True, highlight=False)
    console.print(f"accuracy [bold]{result['accuracy']:.2f}%[/]  loss {result['loss']:.4f}", highlight=False)

    classes = result["classes"]
    per = Table(title="per-class accuracy", title_justify="left")
    per.add_column("class")
    per.add_column("correct", justify="right")
    per.add_column("total", justify="right")
    per.add_column("accuracy", justify="right")
    for row in result["per_class"]:
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.1f}%"
        per.add_row(row["class"], f"{row['correct']:,}", f"{row['total']:,}", acc)
    console.print(per)

    matrix = result["confusion"]
    cm = Table(title="confusion matrix (rows: true class, columns: predicted)", title_justify="left",
               box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    cm.add_column("true class", no_wrap=True, min_width=10)
    for name in classes:
        cm.add_column(_short(name), justify="right", no_wrap=True)
    for i, name in enumerate(classes):
        total = sum(matrix[i])
        cells = [f"[{_cell_style(c, total, i == j)}]{c}[/]" if _cell_style(c, total, i == j) else str(c)
                 for j, c in enumerate(matrix[i])]
        cm.add_row(name, *cells)
    console.print(cm)

    if result["most_confused"]:
        top = Table(title="most confused", title_justify="left")
        top.add_column("true")
        top.add_column("predicted as")
        top.add_column("count", justify="right")
        top.add_column("% of true class", justify="right")
        for c in result["most_confused"]:
            top.add_row(c["true"], c["predicted"], f"{c['count']:,}", f"{c['percent_of_true']:.1f}%")
        console.print(top)
    if result.get("eval_json"):
        console.print(f"wrote {result['eval_json']}", soft_wrap=True, highlight=False)
