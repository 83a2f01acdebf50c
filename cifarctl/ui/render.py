"""Print a :class:`~cifarctl.tabular.Tabular` where it is going.

* A terminal: a rich table at the terminal's width. When it does not fit, whole
  secondary columns are dropped (highest ``Column.drop`` first) before rich would cut a
  key cell to ``…``, and one line says which were hidden.
* A pipe or file (and no ``COLUMNS`` set): the table at its natural width, every cell in
  full, so ``cifarctl summary s9_dilated > file`` keeps every RF and param count.
* ``--format md``: GitHub-flavoured markdown (:func:`cifarctl.tabular.markdown`).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import replace

from rich import box as _box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from cifarctl.safetext import shown
from cifarctl.tabular import Tabular, markdown

_NATURAL_MAX = 1000  # columns: wide enough for any table this tool prints
def print_line(console: Console, text: str, style: str | None = None, *, lead: str = "",
               lead_style: str | None = None) -> None:
    """One plain line: no markup, control characters escaped (:func:`shown`); on a terminal
    wrapped between words at its width (a continuation indented), never inside a number or
    a path; off one, a single line whatever its length. ``lead`` (e.g. ``"error:"``) starts
    the line in ``lead_style``."""
    text = (lead + " " if lead else "") + shown(text)
    if console.is_terminal and len(text) > console.width:
        text = "\n".join(textwrap.wrap(text, console.width, subsequent_indent="  ", break_long_words=False,
                                        break_on_hyphens=False)) or text
    out = Text(text, style=style or "")
    if lead and lead_style:
        out.stylize(lead_style, 0, len(lead))
    console.print(out, soft_wrap=True, highlight=False)


def to_rich(tab: Tabular) -> Table:
    """The rich table of ``tab`` (cells as plain text with their styles: no markup parsed,
    control characters shown escaped)."""
    compact = tab.compact
    table = Table(title=None if tab.title is None else Text(shown(tab.title)), title_justify="left", header_style="bold",
                  **({"box": _box.SIMPLE_HEAD, "pad_edge": False, "padding": (0, 1, 0, 0)} if compact else {}))
    for j, c in enumerate(tab.columns):
        no_wrap = not c.wrap and (c.drop == 0 or c.align == "right")
        # a key column (a name the user types, a number) asks for its whole width, header included;
        # one cut anyway ends in an ellipsis, never silently
        cells = [shown(row[j]) for row in tab.rows] + [c.name]
        # a wrapped column gets room for its longest word: it wraps between words, never inside one
        whole = max(len(x) for x in cells) if no_wrap else max(len(w) for x in cells for w in x.split() or [""])
        table.add_column(c.name, justify=c.align, no_wrap=no_wrap, min_width=whole,
                         overflow="ellipsis" if no_wrap else "fold")
    for i, row in enumerate(tab.rows):
        if i in tab.sections:
            table.add_section()
        table.add_row(*(Text(shown(cell), style=tab.styles.get((i, j), "")) for j, cell in enumerate(row)),
                      style=tab.row_styles.get(i))
    return table


def natural_width(console: Console, renderable) -> int:
    return Measurement.get(console, console.options.update(width=_NATURAL_MAX), renderable).maximum


def fitted(console: Console, tab: Tabular) -> tuple[Tabular, list[str]]:
    """``tab`` without the secondary columns a terminal of this width has no room for,
    and the names of those dropped (most expendable first)."""
    dropped: list[str] = []
    order = sorted((c for c in tab.columns if c.drop > 0), key=lambda c: -c.drop)
    cur = tab
    for col in order:
        if natural_width(console, to_rich(cur)) <= console.width:
            break
        dropped.append(col.name)
        cur = tab.without(set(dropped))
    return cur, dropped


def print_natural_width(console: Console, renderable) -> None:
    """Print; off a terminal (with no COLUMNS set) at the renderable's natural width,
    so a log file gets whole rows rather than columns squeezed to 80 characters."""
    if console.is_terminal or "COLUMNS" in os.environ:
        console.print(renderable)
        return
    wide = Console(file=console.file, width=max(console.width, natural_width(console, renderable)),
                   color_system=console.color_system, no_color=console.no_color, highlight=False,
                   force_terminal=False)
    wide.print(renderable)


def print_table(console: Console, tab: Tabular, fmt: str = "table") -> None:
    """Print ``tab`` as a terminal/plain table (``table``) or as markdown (``md``)."""
    if fmt == "md":
        console.out(markdown(tab), highlight=False, end="")
        return
    notes = list(tab.notes)
    if console.is_terminal or "COLUMNS" in os.environ:  # a width to fit: whole columns go, not parts of cells
        tab, dropped = fitted(console, tab)
        if dropped:
            notes.append(f"(hidden to fit {console.width} columns: {', '.join(dropped)}; "
                         "widen the terminal or use --format md)")
    # the title as a line of its own: a rich title wraps at the table's width, however wide the terminal
    if tab.title:
        print_line(console, tab.title, "italic")
    print_natural_width(console, to_rich(replace(tab, title=None)))
    for note in notes:  # word-wrapped on a terminal, whole lines into a file
        console.print(Text(note, style="dim"), soft_wrap=not console.is_terminal)


def print_markdown_doc(console: Console, parts: list[str | Tabular]) -> None:
    """Several paragraphs and tables as one markdown document, a blank line apart."""
    chunks = [markdown(p) if isinstance(p, Tabular) else p.rstrip("\n") + "\n" for p in parts]
    console.out("\n".join(chunks), highlight=False, end="")
