"""`cifarctl data`: what a data source holds: counts per class, channel stats, samples."""

from __future__ import annotations

import json as _json
import time
from typing import Annotated, Any, Optional

import typer

from cifarctl.cli.app import app, console


def data_summary(data) -> dict[str, Any]:
    """Counts per class per split and train channel stats of a ``CifarArrays``, as plain data."""
    import numpy as np

    from cifarctl.data import channel_stats

    counts = {}
    for split, y in (("train", data.train_y), ("test", data.test_y)):
        n = np.bincount(y, minlength=data.num_classes)
        counts[split] = {c: int(k) for c, k in zip(data.classes, n)}
    stats = channel_stats(data.train_x) if len(data.train_y) else None
    return {
        "source": data.source,
        "cached": data.cached,
        "classes": list(data.classes),
        "train": int(len(data.train_y)),
        "test": int(len(data.test_y)),
        "counts": counts,
        "train_stats": {k: list(v) for k, v in stats.items()} if stats else None,
    }


def sample_indices(labels, num_classes: int, n: int) -> list[int]:
    """Up to ``n`` indices, one per class in class order, then a second round, ..."""
    import numpy as np

    per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    out: list[int] = []
    rnd = 0
    while len(out) < n and any(len(p) > rnd for p in per_class):
        out += [int(p[rnd]) for p in per_class if len(p) > rnd][: n - len(out)]
        rnd += 1
    return out


@app.command("data", short_help="Images per class, channel statistics and samples.")
def data(
    source: Annotated[
        Optional[str],
        typer.Argument(
            help="cifar10 (download), synthetic[:N[:M]], or a path: a cifar-10-batches-py "
            "folder, cifar-10-python.tar.gz, or an image folder/archive with train/<class>/ "
            "and test/<class>/. Default: $CIFARCTL_DATA, else cifar10.",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", min=0, help="Sample train images to draw (terminal only).")
    ] = 8,
    json: Annotated[bool, typer.Option("--json", help="Print counts and stats as JSON.")] = False,
) -> None:
    """Show what a data source holds: images per class, channel statistics, samples."""
    from rich.table import Table

    from cifarctl.data import load_cifar

    start = time.perf_counter()
    loaded = load_cifar(source)
    seconds = time.perf_counter() - start
    summary = data_summary(loaded)
    if json:
        typer.echo(_json.dumps(summary, indent=2))
        return

    how = "from the cache" if loaded.cached else "decoded and cached" if loaded.cache_written else \
        "decoded; not cached"
    console.print(f"[bold]source[/]: {loaded.source}  [dim]({how}, {seconds:.1f} s)[/]",
                  highlight=False)

    counts = Table(title="images per class", title_justify="left")
    counts.add_column("class")
    counts.add_column("train", justify="right")
    counts.add_column("test", justify="right")
    for c in loaded.classes:
        counts.add_row(c, f"{summary['counts']['train'][c]:,}", f"{summary['counts']['test'][c]:,}")
    counts.add_section()
    counts.add_row("[bold]total[/]", f"[bold]{summary['train']:,}[/]",
                   f"[bold]{summary['test']:,}[/]")
    console.print(counts)

    if summary["train_stats"]:
        st = summary["train_stats"]
        stats = Table(title="train channels, scaled to [0, 1]", title_justify="left")
        for col in ("channel", "mean", "std", "min", "max"):
            stats.add_column(col, justify="left" if col == "channel" else "right")
        for i, name in enumerate(("R", "G", "B")):
            stats.add_row(name, *(f"{st[k][i]:.4f}" for k in ("mean", "std", "min", "max")))
        console.print(stats)

    if samples:
        if not console.is_terminal:
            console.print("(sample images skipped: output is not a terminal)")
            return
        from cifarctl.ui.images import render_images

        idx = sample_indices(loaded.train_y, loaded.num_classes, samples)
        console.print(render_images([loaded.train_x[i] for i in idx],
                                    [loaded.classes[loaded.train_y[i]] for i in idx]))
