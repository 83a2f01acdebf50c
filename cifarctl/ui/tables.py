"""The commands' tables and reports, as rich renderables printed on a given console:
``models``, ``recipes``, ``data``, ``summary``, ``eval`` and ``lr-find``.

Each ``show_*`` function takes what the library returned and prints it; nothing here
computes a number the library did not.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cifarctl.safetext import md_text
from cifarctl.tabular import Column, Tabular
from cifarctl.training.lr_suggest import LABELS, SUGGESTIONS
from cifarctl.ui.charts import lr_find_chart, lr_find_key
from cifarctl.ui.render import print_line, print_markdown_doc, print_table


# ------------------------------------------------------------------------ models, recipes
def models_table(rows: list[dict[str, Any]]) -> Tabular:
    """The registry: name (aliases), params, assignment, description."""
    tab = Tabular(None, [Column("Model"), Column("Params", "right"), Column("In its recipe", "right", drop=1),
                         Column("Assignment", drop=2), Column("Description", drop=3)])
    for r in rows:
        name = r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else "")
        other = {k: v for k, v in (r.get("recipe_params") or {}).items() if v != r["params"]}
        tab.add_row(name, f"{r['params']:,}", ", ".join(f"{v:,} ({k})" for k, v in other.items()),
                    r["assignment"], r["description"])
    if any(row[2] for row in tab.rows):
        tab.notes = ["Params: with the model's defaults; In its recipe: as the bundled recipe builds it (model_args)."]
    else:
        tab = tab.without({"In its recipe"})
    return tab


def show_models(console: Console, rows: list[dict[str, Any]], fmt: str = "table") -> None:
    print_table(console, models_table(rows), fmt)


def target_text(t) -> str:
    parts = []
    if t.min_test_acc is not None:
        parts.append(f"≥ {t.min_test_acc:.2f} %")
    if t.max_epochs is not None:
        parts.append(f"≤ {t.max_epochs} ep")
    if t.max_params is not None:
        parts.append(f"≤ {t.max_params:,} params")
    return ", ".join(parts) or "-"


def recipes_table(recipes: dict) -> Tabular:
    """The bundled recipes (name -> Recipe): assignment, model, epochs, batch, optimizer, target."""
    tab = Tabular("Bundled recipes", [
        Column("name"), Column("assignment", drop=3), Column("model"), Column("epochs", "right"),
        Column("batch", "right", drop=1), Column("optimizer", drop=2), Column("target", wrap=True)])
    for name, r in recipes.items():
        tab.add_row(name, r.assignment, r.model, str(r.epochs), str(r.data.batch_size),
                    f"{r.optimizer.name}/{r.scheduler.name}", target_text(r.target))
    return tab


def show_recipes(console: Console, recipes: dict, fmt: str = "table") -> None:
    print_table(console, recipes_table(recipes), fmt)
    if fmt == "table":
        print_line(console, "Train one with cifarctl train NAME; show one resolved with cifarctl recipes NAME.")


# ------------------------------------------------------------------------ data
def data_tables(summary: dict) -> list[Tabular]:
    """Images per class and split; each split's channel statistics."""
    counts = Tabular("images per class", [Column("class"), Column("train", "right"), Column("test", "right")])
    for c in summary["classes"]:
        counts.add_row(c, f"{summary['counts']['train'][c]:,}", f"{summary['counts']['test'][c]:,}")
    counts.section()
    counts.add_row("total", f"{summary['train']:,}", f"{summary['test']:,}", style="bold")
    out = [counts]
    for split in ("train", "test"):
        st = summary.get(f"{split}_stats")
        if not st:
            continue
        stats = Tabular(f"{split} channels, scaled to [0, 1]",
                        [Column("channel"), *(Column(k, "right") for k in ("mean", "std", "min", "max"))])
        for i, name in enumerate(("R", "G", "B")[: len(st["mean"])]):
            stats.add_row(name, *(f"{st[k][i]:.4f}" for k in ("mean", "std", "min", "max")))
        out.append(stats)
    return out


def data_source_line(summary: dict, seconds: float) -> str:
    how = ("from the cache" if summary["cached"] else "decoded and cached" if summary.get("cache_written", True)
           else "decoded; not cached")
    return f"source: {summary['source']} ({how}, {seconds:.1f} s)"


def show_data(console: Console, summary: dict, seconds: float, fmt: str = "table") -> None:
    """A data source's images per class and channel statistics of both splits."""
    tables = data_tables(summary)
    if fmt == "md":
        print_markdown_doc(console, [data_source_line(summary, seconds), *tables])
        return
    console.print(Text(data_source_line(summary, seconds)), soft_wrap=True)
    for tab in tables:
        print_table(console, tab)


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


RF_STAR = "RF*: residual sum, RF is the max over the summed paths"


def summary_tables(summary, *, dotted: bool = False) -> tuple[Tabular, Tabular]:
    """A :class:`~cifarctl.analysis.layers.ModelSummary` as its layer table and its totals.

    ``dotted``: layer names in full (``block1.0.conv``, for markdown) instead of the last
    name part indented by depth (a terminal). Rows whose RF is a max over summed paths get
    a ``*``; the model's RF caveats (per-sample normalisation) become the table's notes."""
    title = f"{summary.model}, input {_shape([1, *summary.input_size])} (batch 1)"
    layers = Tabular(title, [
        Column("Layer"), Column("Type", drop=3), Column("Output"), Column("Params", "right"),
        Column("MACs", "right", drop=4), Column("Kernel", drop=2), Column("RF", "right"),
        Column("Jump", "right", drop=1), Column("Note", drop=5)])
    noted = False
    for row in summary.layers:
        params = f"{row['params']:,}" if row["params"] else "-"
        rf = str(row["rf"]) if row["rf"] is not None else ""
        if row["note"]:
            rf, noted = rf + "*", True
        name = row["name"] if dotted else "  " * (row["depth"] - 1) + row["name"].rsplit(".", 1)[-1]
        layers.add_row(name, row["type"], _shape(row["output_shape"]), params,
                       _human(row["mult_adds"]) if row["mult_adds"] else "", _kernel(row), rf,
                       str(row["jump"]) if row["jump"] is not None else "", row["note"],
                       cell_styles={3: "" if row["leaf"] or not row["params"] else "dim", 8: "dim"})
    if noted:
        layers.notes.append(RF_STAR)
    layers.notes += [f"RF note: {n}" for n in getattr(summary, "notes", [])]
    s = summary
    totals = Tabular("totals", [Column("quantity"), Column("value", "right")])
    for k, v in (
        ("Total params", f"{s.total_params:,}"),
        ("Trainable params", f"{s.trainable_params:,}"),
        ("Non-trainable params", f"{s.non_trainable_params:,}"),
        ("Mult-adds (batch 1, conv + linear)", f"{s.mult_adds / 1e6:,.2f} M"),
        ("Receptive field", f"{s.receptive_field} px (jump {s.jump})"),
        ("Input size", _mb(s.input_bytes)),
        ("Forward/backward pass size", _mb(s.forward_backward_bytes)),
        ("Params size", _mb(s.param_bytes)),
        ("Estimated total size", _mb(s.total_bytes)),
    ):
        totals.add_row(k, v)
    return layers, totals


def show_summary(console: Console, summary, fmt: str = "table") -> None:
    """The layer table, then the totals (both as markdown with ``fmt="md"``)."""
    layers, totals = summary_tables(summary, dotted=fmt == "md")
    if fmt == "md":
        print_markdown_doc(console, [layers, totals])
        return
    print_table(console, layers)
    print_table(console, totals)


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


MATRIX_MAX_CLASSES = 20  # more classes: the confusion matrix goes to a CSV file, not the terminal


def eval_lines(result: dict) -> list[str]:
    """What was evaluated, and the accuracy."""
    tta = "" if result["tta"] == "none" else f", TTA {result['tta']}"
    where = f"epoch {result['epoch']}" + (" (mid-epoch)" if result.get("mid_epoch") else "")
    return [f"{result['model']} {result['checkpoint']} ({where}) on the {result['split']} split "
            f"of {result['data']}: {result['images']:,} images{tta}",
            f"accuracy {result['accuracy']:.2f}%  loss "
            + ("not finite" if result["loss"] is None else f"{result['loss']:.4f}")]


def eval_tables(result: dict) -> list[Tabular]:
    """Per-class accuracy, the confusion matrix (coloured on a terminal), the most confused pairs."""
    classes = result["classes"]
    per = Tabular("per-class accuracy", [Column("class"), Column("correct", "right"), Column("total", "right"),
                                         Column("accuracy", "right")])
    for row in result["per_class"]:
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.1f}%"
        per.add_row(row["class"], f"{row['correct']:,}", f"{row['total']:,}", acc)

    matrix = result["confusion"]
    out = [per]
    if len(classes) <= MATRIX_MAX_CLASSES:
        cm = Tabular("confusion matrix (rows: true class, columns: predicted)",
                     [Column("true class"), *(Column(_short(n), "right") for n in classes)], compact=True)
        for i, name in enumerate(classes):
            total = sum(matrix[i])
            cm.add_row(name, *map(str, matrix[i]),
                       cell_styles={j + 1: _cell_style(c, total, i == j) for j, c in enumerate(matrix[i])})
        out.append(cm)
    else:  # a 100x100 matrix is no table: the most confused pairs say what it holds
        where = result.get("confusion_csv") or "eval.json (confusion)"
        per.notes.append(f"{len(classes)} classes: the full {len(classes)}x{len(classes)} confusion matrix is "
                         f"in {where}; the most confused pairs follow")
    if result["most_confused"]:
        top = Tabular("most confused", [Column("true"), Column("predicted as"), Column("count", "right"),
                                        Column("% of true class", "right")])
        for c in result["most_confused"]:
            top.add_row(c["true"], c["predicted"], f"{c['count']:,}", f"{c['percent_of_true']:.1f}%")
        out.append(top)
    return out


def show_eval(console: Console, result: dict, fmt: str = "table") -> None:
    """An eval.json dict: what and accuracy, per-class table, confusion matrix, most confused."""
    head, acc = eval_lines(result)
    tables = eval_tables(result)
    if fmt == "md":
        print_markdown_doc(console, [f"{md_text(head)}  \n**{md_text(acc)}**", *tables])
        return
    print_line(console, head)
    print_line(console, acc, "bold")
    for tab in tables:
        print_table(console, tab)
    if result.get("eval_json"):
        print_line(console, f"wrote {result['eval_json']}")


# ------------------------------------------------------------------------ lr-find
_RULES = {
    "valley": "halfway down the longest descent",
    "steepest": "where the loss falls fastest",
    "min_div_10": "lowest loss's lr / 10",
}


def suggestions_table(result) -> Table:
    """Each LR range test suggestion, its lr, its rule, and which one is recommended."""
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
    width = max(40, min(console.width, 100))
    text = lr_find_chart(result, width=width, colorless=not console.is_terminal)
    if text:
        if console.is_terminal:
            console.print(Text.from_ansi(text))
        else:
            print(text)
        console.print(lr_find_key(result, console.width), highlight=False)
    console.print(suggestions_table(result))
    for note in result.notes:  # print_line: wrapped between words on a terminal, never inside a path
        print_line(console, note, lead="note:", lead_style="yellow")
    if result.recommended is not None:
        print_line(console, f"— {result.reason}", lead=f"recommended lr {result.recommended:.2e}", lead_style="bold")
    elif not result.conclusive:
        print_line(console, f"{result.inconclusive_reason}; no lr is recommended "
                            "(the suggestions above are not to be trusted)", lead="inconclusive:",
                   lead_style="bold yellow")
        if result.advice:
            print_line(console, "try: " + "; ".join(result.advice))
    else:
        print_line(console, result.reason, lead="no lr to recommend:", lead_style="bold red")
    print_line(console, f"{len(result.lr)} steps in {result.seconds:.1f}s; wrote {out_dir}/ (lr_find.json, lr_find.png)")


# ------------------------------------------------------------------------ assignment rules
def rules_table(recipe, rows: list[dict]) -> Tabular:
    """The Rules table of ``summary`` and the report: rule, required, measured, PASS/FAIL."""
    name = (recipe.rules.assignment if recipe.rules is not None else None) or "the assignment"
    tab = Tabular(f"Rules of {name}", [Column("rule", wrap=True), Column("required", wrap=True),
                                        Column("measured", wrap=True), Column("result")])
    for r in rows:
        verdict = "-" if r["ok"] is None else "PASS" if r["ok"] else "FAIL"
        tab.add_row(r["rule"], r["required"], r["measured"], verdict,
                    cell_styles={3: {"PASS": "green", "FAIL": "bold red"}.get(verdict, "")})
    best = recipe.rules.best_public if recipe.rules is not None else None
    if best is not None:
        tab.notes = [f"best public submission: {best.acc:.2f} % ({best.source})"]
    return tab
