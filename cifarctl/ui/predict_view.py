"""``cifarctl predict``'s output: the table of top classes, and a progress bar for a folder."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cifarctl.safetext import md_text
from cifarctl.tabular import Column, Tabular
from cifarctl.ui.render import print_line, print_markdown_doc, print_table


def predictions_table(result: dict) -> Tabular:
    """One row per image: its top class and probability, then the next classes."""
    tab = Tabular(None, [Column("image"), Column("class"), Column("probability", "right"),
                         Column("next", drop=1, wrap=True)])
    for p in result["predictions"]:
        top = p["top"]
        rest = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in top[1:])
        tab.add_row(p["path"], top[0]["class"], f"{100 * top[0]['probability']:.1f}%", rest or "-")
    return tab


def head_line(result: dict, run: str) -> str:
    tta = "" if result["tta"] == "none" else f", TTA {result['tta']}"
    n = len(result["predictions"])
    return (f"{run} ({result['checkpoint']}): {n} image{'' if n == 1 else 's'}, "
            f"{result['resize']}{tta}")


def show_predictions(console: Console, err_console: Console, result: dict, run: str, fmt: str = "table") -> None:
    """The table (or markdown), then one line per file that could not be predicted, on stderr."""
    tab = predictions_table(result)
    if fmt == "md":
        print_markdown_doc(console, [md_text(head_line(result, run)), tab])
    else:
        print_line(console, head_line(result, run))
        if result["predictions"]:
            print_table(console, tab)
    for line in result["errors"]:
        print_line(err_console, f"error: {line}", "red")
    if result.get("gradcam_png"):
        print_line(console, f"wrote {result['gradcam_png']}")


@contextmanager
def image_progress(console: Console, label: str = "predicting"):
    """``progress(done, total)`` drawing a bar on a terminal (nothing elsewhere)."""
    if not console.is_terminal:
        yield None
        return

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
