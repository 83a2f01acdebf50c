"""`cifarctl data`: what a data source holds: counts per class, channel stats, samples."""

from __future__ import annotations

import json as _json
import time
from typing import Annotated, Optional

import typer

from cifarctl.cli.app import FormatOption, OutputFormat, app, console, output_format


@app.command("data", short_help="Images per class, channel statistics and samples.")
def data(
    source: Annotated[
        Optional[str],
        typer.Argument(
            help="cifar10 or cifar100 (download), synthetic[:N[:M]], or a path: a cifar-10-batches-py "
            "or cifar-100-python folder or its .tar.gz, or an image folder/archive with train/<class>/ "
            "and test/<class>/. Default: $CIFARCTL_DATA, else cifar10.",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", min=0, help="Sample train images to draw (terminal only).")
    ] = 8,
    data_opt: Annotated[Optional[str], typer.Option(
        "--data", metavar="PATH", help="The same as SOURCE, as every other command spells it.")] = None,
    image_size: Annotated[int, typer.Option("--image-size", min=8, max=512, help="The side an image folder's "
                                            "images are resized to (data.image_size).")] = 32,
    label_kind: Annotated[str, typer.Option("--label-kind", help="CIFAR-100's labels: fine or coarse.")] = "fine",
    json: Annotated[bool, typer.Option("--json", help="Print counts and stats as JSON (same as --format json).")] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Show what a data source holds: images per class, channel statistics, samples."""
    from cifarctl.data import data_summary, load_cifar, sample_indices
    from cifarctl.errors import UsageError

    if source is not None and data_opt is not None and source != data_opt:
        raise UsageError(f"two data sources given: {source!r} and --data {data_opt!r}; give one")
    source = source if source is not None else data_opt
    fmt = output_format(fmt, json)

    start = time.perf_counter()
    loaded = load_cifar(source, image_size=image_size, label_kind=label_kind)
    seconds = time.perf_counter() - start
    summary = data_summary(loaded)
    if fmt == "json":
        typer.echo(_json.dumps(summary, indent=2))
        return
    from cifarctl.ui.tables import show_data

    show_data(console, summary, seconds, fmt)
    if samples and fmt == "table":
        if not console.is_terminal:
            console.print("(sample images skipped: output is not a terminal)")
            return
        from cifarctl.ui.images import colour_mode, print_colour_hint, render_images

        idx = sample_indices(loaded.train_y, loaded.num_classes, samples)
        print_colour_hint(console)
        console.print(render_images([loaded.train_x[i] for i in idx],
                                    [loaded.classes[loaded.train_y[i]] for i in idx], colours=colour_mode(console)))
