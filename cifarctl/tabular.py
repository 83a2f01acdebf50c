"""One table, three outputs: a terminal, a pipe or file, and GitHub-flavoured markdown.

A :class:`Tabular` holds plain strings only (numbers already formatted), the columns'
alignment and how readily each may be dropped on a narrow terminal, plus optional
per-cell styles that only the terminal uses. ``cifarctl.ui.render`` turns it into a rich
table; :func:`markdown` turns it into text a student pastes into a write-up. Commands
build one ``Tabular`` and pick the output, so the two never drift apart.

No rich and no torch here: the analysis layer (``compare --export md``) uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cifarctl.safetext import shown

FORMATS = ("table", "md", "json")


@dataclass
class Column:
    """A column's header and layout.

    ``drop``: 0 for a key column that is never dropped; a column with a higher number is
    dropped before one with a lower number when a terminal is too narrow for the table.
    ``wrap``: a column of sentences, folded to fit rather than dropped or cropped.
    """

    name: str
    align: str = "left"  # "left" | "right"
    drop: int = 0
    wrap: bool = False


@dataclass
class Tabular:
    """A titled table of already-formatted cells (``rows[i][j]`` is column ``j``'s text)."""

    title: str | None
    columns: list[Column]
    rows: list[list[str]] = field(default_factory=list)
    # rich styles by (row, column); the terminal uses them, markdown and plain text do not
    styles: dict[tuple[int, int], str] = field(default_factory=dict)
    row_styles: dict[int, str] = field(default_factory=dict)
    # row indices before which the terminal draws a separator line (e.g. a "total" row)
    sections: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # printed under the table
    compact: bool = False  # terminal: a header rule only, no box (wide matrices)

    def add_row(self, *cells: str, style: str | None = None, cell_styles: dict[int, str] | None = None) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        i = len(self.rows)
        self.rows.append([str(c) for c in cells])
        if style:
            self.row_styles[i] = style
        for j, s in (cell_styles or {}).items():
            if s:
                self.styles[(i, j)] = s

    def section(self) -> None:
        """A separator line before the next row (terminal only)."""
        self.sections.add(len(self.rows))

    def without(self, names: set[str]) -> "Tabular":
        """A copy without the named columns."""
        keep = [j for j, c in enumerate(self.columns) if c.name not in names]
        remap = {j: k for k, j in enumerate(keep)}
        return Tabular(
            title=self.title,
            columns=[self.columns[j] for j in keep],
            rows=[[row[j] for j in keep] for row in self.rows],
            styles={(i, remap[j]): s for (i, j), s in self.styles.items() if j in remap},
            row_styles=dict(self.row_styles),
            sections=set(self.sections),
            notes=list(self.notes),
            compact=self.compact,
        )


def _md_inline(text: str) -> str:
    """One line of markdown shown as written: control characters escaped, HTML shown as
    text, and ``\\``, ``[`` and ``]`` escaped (no link or image can open)."""
    flat = shown(" ".join(str(text).splitlines()))
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return flat.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def _md_cell(text: str) -> str:
    """A markdown table cell: :func:`_md_inline`, and ``|`` escaped."""
    return _md_inline(text).replace("|", "\\|").strip()


def markdown(table: Tabular, *, heading: str | None = "###") -> str:
    """GitHub-flavoured markdown: the title as a heading (or bold line when ``heading`` is
    None), the table with right-aligned numeric columns, then the notes."""
    out = []
    if table.title:
        out += [f"{heading} {_md_cell(table.title)}" if heading else f"**{_md_cell(table.title)}**", ""]
    out.append("| " + " | ".join(_md_cell(c.name) for c in table.columns) + " |")
    out.append("|" + "|".join("--:" if c.align == "right" else ":--" for c in table.columns) + "|")
    out += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in table.rows]
    if table.notes:
        notes = [_md_inline(n) for n in table.notes]
        out += [""] + [f"{n}  " if k < len(notes) - 1 else n for k, n in enumerate(notes)]
    return "\n".join(out) + "\n"
