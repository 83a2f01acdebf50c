"""The one YAML loader: ``yaml.SafeLoader`` with bounds, for every YAML cifarctl reads.

PyYAML's ``safe_load`` builds no objects but plain data, yet it has no limit on alias
expansion (a "billion laughs" of nested anchors is a few hundred bytes that expands to
billions of nodes: whatever walks the result hangs or runs out of memory), none on
nesting depth (RecursionError), and it silently keeps the last of two equal keys.
:class:`BoundedLoader` bounds all three:

- nesting deeper than :data:`MAX_DEPTH` levels is an error while composing (before any
  recursion can run out of stack);
- the document is measured as it would be once every alias is expanded (the number of
  nodes and the depth, both counted on the composed node graph, in time linear in the
  file) and refused over :data:`MAX_NODES` nodes or :data:`MAX_DEPTH` levels; a
  recursive alias is refused;
- a key that appears twice in one mapping is an error naming both lines (keys merged in
  with ``<<: *anchor`` may be overridden, as YAML intends).

:func:`read_file` adds the file checks: a regular file (a folder, a device such as
``/dev/null`` or a FIFO are named as such), at most :data:`MAX_FILE_BYTES`, UTF-8 text
(a binary or Latin-1 file is one line naming the byte and line). :func:`check_tree`
bounds a Python object that did not come from YAML (a checkpoint's stored recipe) the
same way. Every error is a :class:`~cifarctl.errors.RecipeError` (exit 2) naming the
file, or a ``yaml.YAMLError`` with a line and column for :func:`load`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, SequenceNode

from cifarctl.errors import RecipeError

MAX_DEPTH = 64            # nesting levels (a recipe needs 6)
MAX_NODES = 50_000        # nodes once every alias is expanded (a recipe has ~200)
MAX_FILE_BYTES = 1 << 20  # a recipe is a few KiB


class YamlLimitError(yaml.YAMLError):
    """A document over the bounds; formatted like PyYAML's own errors (line, column)."""

    def __init__(self, problem: str, mark=None):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark

    def __str__(self) -> str:
        return self.problem


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` bounded in depth, expanded size, and refusing duplicate keys."""

    max_depth = MAX_DEPTH
    max_nodes = MAX_NODES

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    # -- depth while composing: the composer recurses once per level
    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise YamlLimitError(f"nested deeper than {self.max_depth} levels (not a recipe; "
                                     "a YAML nesting bomb?)", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    # -- expanded size before constructing anything
    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            measure(node, self.max_nodes, self.max_depth)
        return node

    # -- numbers too long for int() (Python refuses over 4,300 digits with a ValueError)
    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise YamlLimitError(f"a number of {len(str(node.value)):,} characters: not a recipe value",
                                 node.start_mark) from None

    # -- duplicate keys
    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                try:
                    key = self.construct_object(key_node, deep=True)
                    hash(key)
                except (ConstructorError, TypeError):
                    continue  # the base class reports unhashable keys
                if key in seen:
                    first = seen[key]
                    raise YamlLimitError(f"duplicate key {key!r} (first on line {first.line + 1}, again on "
                                         f"line {key_node.start_mark.line + 1}): keep one",
                                         key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)


def measure(root, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> tuple[int, int]:
    """(nodes, depth) of a composed node graph as if every alias were expanded.

    Linear in the graph (each node is measured once; an alias is a second reference to an
    already measured node); raises :class:`YamlLimitError` over a bound or on a recursive alias.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        kids = _children(node)
        if done:
            on_path.discard(nid)
            size[nid] = 1 + sum(size[id(k)] for k in kids)
            depth[nid] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[nid] > max_nodes:
                raise YamlLimitError(f"expands to more than {max_nodes:,} values once its aliases "
                                     "(*name) are expanded (a YAML alias bomb?)", node.start_mark)
            if depth[nid] > max_depth:
                raise YamlLimitError(f"nested deeper than {max_depth} levels once its aliases (*name) "
                                     "are expanded", node.start_mark)
            continue
        if nid in size:
            continue
        if nid in on_path:
            raise YamlLimitError("recursive alias: an anchor (&name) used inside itself", node.start_mark)
        on_path.add(nid)
        stack.append((node, True))
        for k in kids:
            if id(k) not in size:
                if id(k) in on_path:
                    raise YamlLimitError("recursive alias: an anchor (&name) used inside itself",
                                         k.start_mark)
                stack.append((k, False))
    return size[id(root)], depth[id(root)]


def _children(node) -> list:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load(text: str | bytes) -> Any:
    """Parse one YAML document with :class:`BoundedLoader` (raises ``yaml.YAMLError``)."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def problem(exc: yaml.YAMLError) -> str:
    """'line L, column C: what' for a YAML error; where PyYAML gives a context ("while
    scanning a quoted scalar" at line 3: where the typo is), that comes first, since the
    problem's own line is often the one after the typo."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    what = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and cmark is not None and (mark is None or cmark.line != mark.line):
        where = f"line {cmark.line + 1}, column {cmark.column + 1}: {context}: "
        what = f"{what}" + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark else "")
    if isinstance(exc, ConstructorError) and "tag" in what:
        what = f"{what} (only plain YAML is allowed: no python tags)"
    elif isinstance(exc, ComposerError) and "alias" in what:
        what = f"{what} (aliases need their anchor &name first)"
    return f"{where}{what}"


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a file to read YAML from, or None when it is a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist" if not os.path.islink(path) else "is a dangling symbolic link"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a YAML file"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "is a device, not a YAML file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a pipe or socket?)"
    if st.st_size > MAX_FILE_BYTES:
        return f"is {st.st_size:,} bytes, larger than any recipe ({MAX_FILE_BYTES:,} bytes at most)"
    return None


def decode(data: bytes) -> str:
    """UTF-8 text, or ValueError saying where it is not (binary or another encoding)."""
    if b"\0" in data[:8192]:
        raise ValueError("is a binary file, not YAML text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}; Latin-1 "
                         "or binary?): save it as UTF-8") from None


def read_file(path: str | os.PathLike) -> Any:
    """Read and parse a YAML file with every bound; :class:`RecipeError` naming it otherwise."""
    path = Path(path)
    bad = file_problem(path)
    if bad:
        raise RecipeError(str(path), [bad])
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RecipeError(str(path), [f"cannot be read ({exc.strerror or exc})"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise RecipeError(str(path), [f"larger than any recipe ({MAX_FILE_BYTES:,} bytes at most)"])
    try:
        text = decode(data)
    except ValueError as exc:
        raise RecipeError(str(path), [str(exc)]) from None
    try:
        return load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(str(path), [problem(exc)]) from None
    except RecursionError:  # not reachable with the depth bound; kept as a last guard
        raise RecipeError(str(path), ["nested too deeply"]) from None


def check_tree(obj: Any, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> str | None:
    """Why a Python value (dicts, lists, scalars) is too large or deep to be a recipe, or None.

    Counts values as a walk would meet them (a list referenced twice counts twice), and
    stops at the first bound, so it is cheap even on a crafted, self-similar object.
    """
    count = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, level = stack.pop()
        count += 1
        if count > max_nodes:
            return f"holds more than {max_nodes:,} values"
        if level > max_depth:
            return f"is nested deeper than {max_depth} levels"
        if isinstance(node, dict):
            stack.extend((v, level + 1) for kv in node.items() for v in kv)
        elif isinstance(node, (list, tuple)):
            stack.extend((v, level + 1) for v in node)
    return None
