"""Untrusted text, shown and never interpreted: one function per place it goes.

Names of files and folders, recipe descriptions, file contents and commands reach the
terminal and a report's README.md; there they must stay text. :func:`shown` for the
terminal (control characters shown escaped, ``\\x1b``); for markdown, :func:`md_text` for
running text (HTML and markdown syntax escaped, one line), :func:`md_code` for an inline
code span, :func:`md_block` for a fenced code block and :func:`md_target` for a link or
image target, each also escaping control characters.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x09}
# inline syntax that could open code, a link or a table cell anywhere in a line (emphasis
# is left alone: s8_bn stays readable in the raw file, and bold text is harmless)
_SPECIAL = re.compile(r"([\\`\[\]|])")
_LEADING = re.compile(r"^(\s*\d*)([#+=.)*-])")  # block syntax at the start of a line (1. is a list)
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9/._-]+")


def shown(s) -> str:
    """``s`` safe to print: control characters (ESC, CR, BEL, newline ...) shown escaped."""
    return str(s).translate(_CONTROL)


def md_text(s) -> str:
    """Running text: one line, HTML escaped (``<script>`` shows as written), and the
    markdown syntax that could start code, a link, a table cell break, a heading, a list
    or a quote backslash-escaped."""
    flat = " ".join(str(s).splitlines())
    escaped = _SPECIAL.sub(r"\\\1", shown(flat).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    return _LEADING.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)


def md_code(s) -> str:
    """An inline code span whose fence is longer than any run of backticks inside it."""
    body = shown(" ".join(str(s).splitlines()))
    fence = "`" * (max((len(m) for m in re.findall(r"`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or not body.strip() else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def md_block(s, lang: str = "") -> str:
    """A fenced code block whose fence is longer than any run of backticks inside it."""
    body = "\n".join(shown(line) for line in str(s).splitlines())
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", body)), default=0) + 1)
    return f"{fence}{lang}\n{body}\n{fence}"


def md_target(path: str) -> str:
    """A link or image target: as it is when plain (letters, digits, ``/._-``), else inside
    ``<...>`` (spaces and parentheses allowed there) with what could end it percent-encoded."""
    path = str(path)
    if _PLAIN_TARGET.fullmatch(path):
        return path
    return "<" + quote(path, safe="/._-~!$&'()*+,;=:@ ") + ">"
