"""The commands' tables and reports, as rich renderables printed on a given console:
``models``, ``recipes``, ``data``, ``summary``, ``eval`` and ``lr-find``.

Each ``show_*`` function takes what the library returned and prints it; nothing here
computes a number the library did not.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


# ------------------------------------------------------------------------ models, recipes
def show_models(console: Console, rows: list[dict[str, Any]]) -> None:
    """The registry: name (aliases), params, assignment, description."""
    table = Table(header_style="bold")
    table.add_column("Model", no_wrap=True)
    table.add_column("Params", justify="right", no_wrap=True)
    table.add_column("Assignment")
    table.add_column("Description")
    for r in rows:
        name = r["name"] + (f" [dim]({', '.join(r['aliases'])})[/]" if r["aliases"] else "")
        table.add_row(name, f"{r['params']:,}", r["assignment"], r["description"])
    console.print(table)


def _target_text(t) -> str:
    parts = []
    if t.min_test_acc is not None:
        parts.append(f"≥ {t.min_test_acc:.2f} %")
    if t.max_epochs is not None:
        parts.append(f"≤ {t.max_epochs} ep")
    if t.max_params is not None:
        parts.append(f"< {t.max_params:,} params")
    return ", ".join(parts) or "-"


def show_recipes(console: Console, recipes: dict) -> None:
    """The bundled recipes (name -> Recipe): assignment, model, epochs, batch, optimizer, target."""
    table = Table(title="Bundled recipes", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("assignment")
    table.add_column("model", no_wrap=True)
    table.add_column("epochs", justify="right")
    table.add_column("batch", justify="right")
    table.add_column("optimizer", overflow="fold")
    table.add_column("target", overflow="fold")
    for name, r in recipes.items():
        table.add_row(name, r.assignment, r.model, str(r.epochs), str(r.data.batch_size),
                      f"{r.optimizer.name}/{r.scheduler.name}", _target_text(r.target))
    console.print(table)
    console.print("Train one with [bold]cifarctl train NAME[/]; show one resolved with [bold]cifarctl recipes NAME[/].")


# ------------------------------------------------------------------------ data
def show_data(console: Console, summary: dict, seconds: float) -> None:
    """A data source's images per class and train channel statistics."""
    how = ("from the cache" if summary["cached"] else "decoded and cached" if summary.get("cache_written", True)
           else "decoded; not cached")
    console.print(f"[bold]source[/]: {summary['source']}  [dim]({how}, {seconds:.1f} s)[/]", highlight=False)
    counts = Table(title="images per class", title_justify="left")
    counts.add_column("class")
    counts.add_column("train", justify="right")
    counts.add_column("test", justify="right")
    for c in summary["classes"]:
        counts.add_row(c, f"{summary['counts']['train'][c]:,}", f"{summary['counts']['test'][c]:,}")
    counts.add_section()
    counts.add_row("[bold]total[/]", f"[bold]{summary['train']:,}[/]", f"[bold]{summary['test']:,}[/]")
    console.print(counts)
    if summary["train_stats"]:
        st = summary["train_stats"]
        stats = Table(title="train channels, scaled to [0, 1]", title_justify="left")
        for col in ("channel", "mean", "std", "min", "max"):
            stats.add_column(col, justify="left" if col == "channel" else "right")
        for i, name in enumerate(("R", "G", "B")):
            stats.add_row(name, *(f"{st[k][i]:.4f}" for k in ("mean", "std", "min", "max")))
        console.print(stats)


# ------------------------------------------------------------------------ summary
def _mb(n: int) -> str:
    return f"{n / 2**20:,.2f} MB"


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _shape(shape: list[int] | None) -> str:
    return "x".join(map(str, shape[1:])) if shape else ""


def _kernel(row: dict[str, Any]) -> str:
    if row.get("kernel") is None:
        return ""
    k, s, d = row["kernel"], row["stride"], row["dilation"]
    text = f"{k[0]}x{k[1]} s{s[0]}"
    if d and d[0] != 1:
        text += f" d{d[0]}"
    return text


def show_summary(console: Console, summary) -> None:
    """A :class:`~cifarctl.analysis.layers.ModelSummary`: a layer table, then a totals panel.

    Rows whose RF is a max over summed paths get a ``*`` after the RF; the full note
    is shown in its own column when the console is at least 130 columns wide.
    """
    wide = getattr(console, "width", 80) >= 130
    title = f"{summary.model}, input {_shape([1, *summary.input_size])} (batch 1)"
    table = Table(title=title, header_style="bold")
    table.add_column("Layer", no_wrap=True)  # last name part, indented by depth
    table.add_column("Type", no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column("Output", no_wrap=True)
    table.add_column("Params", justify="right", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    table.add_column("Kernel", no_wrap=True)
    table.add_column("RF", justify="right", no_wrap=True)
    table.add_column("Jump", justify="right", no_wrap=True)
    if wide:
        table.add_column("Note", style="dim")
    noted = False
    for row in summary.layers:
        params = f"{row['params']:,}" if row["params"] else "-"
        rf = str(row["rf"]) if row["rf"] is not None else ""
        if row["note"]:
            rf, noted = rf + "*", True
        cells = [
            "  " * (row["depth"] - 1) + row["name"].rsplit(".", 1)[-1],
            row["type"],
            _shape(row["output_shape"]),
            params if row["leaf"] or not row["params"] else f"[dim]{params}[/]",
            _human(row["mult_adds"]) if row["mult_adds"] else "",
            _kernel(row),
            rf,
            str(row["jump"]) if row["jump"] is not None else "",
        ]
        table.add_row(*cells, *([row["note"]] if wide else []))
    console.print(table)
    s = summary
    lines = [
        f"Total params:        {s.total_params:,}",
        f"Trainable params:    {s.trainable_params:,}",
        f"Non-trainable:       {s.non_trainable_params:,}",
        f"Mult-adds (batch 1): {s.mult_adds / 1e6:,.2f} M  (conv + linear)",
        f"Receptive field:     {s.receptive_field} px (jump {s.jump})",
        f"Input size:          {_mb(s.input_bytes)}",
        f"Forward/backward:    {_mb(s.forward_backward_bytes)}",
        f"Params size:         {_mb(s.param_bytes)}",
        f"Estimated total:     {_mb(s.total_bytes)}",
    ]
    if noted:
        lines.append("[dim]RF*: residual sum, RF is the max over the summed paths[/]")
    console.print(Panel("\n".join(lines), title="totals", expand=False))


# ------------------------------------------------------------------------ eval
_SHORT = {"airplane": "plane", "automobile": "car"}


def _short(name: str) -> str:
    return _SHORT.get(name, name[:5])


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


def show_eval(console: Console, result: dict) -> None:
    """An eval.json dict: accuracy, per-class table, colour-scaled confusion matrix, most confused."""
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


# ------------------------------------------------------------------------ lr-find
_RULES = {
    "valley": "halfway down the longest descent",
    "steepest": "where the loss falls fastest",
    "min_div_10": "lowest loss's lr / 10",
}


def suggestions_table(result) -> Table:
    """Each LR range test suggestion, its lr, its rule, and which one is recommended."""
    from cifarctl.training.lrfind import LABELS, SUGGESTIONS

    title = "Suggestions" if result.conclusive else "Suggestions (inconclusive sweep: not to be trusted)"
    table = Table(title=title, title_justify="left")
    table.add_column("suggestion")
    table.add_column("lr", justify="right")
    table.add_column("rule")
    for k in SUGGESTIONS:
        v = result.suggestions.get(k)
        rec = k == result.recommended_by
        table.add_row(LABELS[k] + (" (recommended)" if rec else ""),
                      "[dim]unavailable[/]" if v is None else f"{v:.2e}", _RULES[k],
                      style="bold green" if rec else None if result.conclusive else "dim")
    return table


def show_lr_find(console: Console, result, out_dir) -> None:
    """An LR range test: the chart (plain text off a terminal) and its key, the suggestions,
    the recommendation, the notes, and where the files went."""
    from cifarctl.ui.charts import lr_find_chart, lr_find_key

    width = max(40, min(console.width, 100))
    text = lr_find_chart(result, width=width, colorless=not console.is_terminal)
    if text:
        if console.is_terminal:
            console.print(Text.from_ansi(text))
        else:
            print(text)
        console.print(lr_find_key(result), highlight=False)
    console.print(suggestions_table(result))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if result.recommended is not None:
        console.print(f"recommended lr [bold]{result.recommended:.2e}[/] — {result.reason}", highlight=False)
    elif not result.conclusive:
        console.print(f"[bold yellow]inconclusive:[/] {result.inconclusive_reason}; no lr is recommended "
                      "(the suggestions above are not to be trusted)", highlight=False)
        if result.advice:
            console.print("try: " + "; ".join(result.advice), highlight=False)
    else:
        console.print(f"[bold red]no lr to recommend[/]: {result.reason}", highlight=False)
    console.print(f"{len(result.lr)} steps in {result.seconds:.1f}s; wrote {out_dir}/ "
                  "(lr_find.json, lr_find.png)", highlight=False, soft_wrap=True)
