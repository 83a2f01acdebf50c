"""Pydantic's validation errors as our one-line problems: ``key.path: what (got value)``.

The key path is the one the recipe spells: pydantic inserts a tag into an error's location
for each union it went through (the discriminator's value, ``optimizer.sgd.lr``, or a
member's type, ``scheduler.max_lr.float``); :func:`_locate` drops both by walking the
location through the recipe mapping and the schema together, and the messages of a union's
members become one line (``must be > 0 or 'auto'``-style: ``A or B (got x)``).
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from cifarctl.errors import did_you_mean
from cifarctl.recipe.schema import LRFind, Recipe
from cifarctl.strict import NOT_A_NUMBER, NotANumber

NOT_FINITE = "must be a finite number (not nan or inf; floats beyond 1.8e308 are inf)"
_FIXED = {"extra_forbidden": "unknown key", "missing": "required key is missing",
          "union_tag_not_found": "missing (say which one, e.g. name: sgd)"}


def sections(annotation: Any) -> list[type[BaseModel]]:
    """The schema sections a field's annotation holds (every member of a union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in get_args(annotation) for m in sections(a)]


def _locate(e: Any, data: Any) -> tuple[str, bool, type[BaseModel] | None]:
    """An error's key path without pydantic's union tags, whether a union member's tag was
    dropped, and the section owning its last key (for close-match suggestions)."""
    path, node, owner, parent, tags, member = [], data, Recipe, None, {}, False
    for i, part in enumerate(e["loc"]):
        found = part in node if isinstance(node, dict) else \
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        if part in tags:  # the discriminator's value: the section it chose
            owner, tags = tags[part], {}
        elif found or i == len(e["loc"]) - 1 and e["type"] in _FIXED:
            path.append(part)
            parent, field = owner, owner.model_fields.get(part) if owner and isinstance(part, str) else None
            members = sections(field.annotation) if field else []
            owner = members[0] if len(members) == 1 else None
            tags = {get_args(m.model_fields["name"].annotation)[0]: m for m in members} if len(members) > 1 else {}
            node = node[part] if found else None
        else:  # a member of a union that is not a section (float | 'auto')
            member = True
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "["), member, parent


def format_errors(err: ValidationError, data: Any) -> list[str]:
    """One line per problem, in pydantic's order; a union's members share their line."""
    lines: dict[Any, tuple[str, dict[str, None], str]] = {}
    for n, e in enumerate(err.errors()):
        path, member, owner = _locate(e, data)
        got, kind, text = e.get("input"), e["type"], repr(e.get("input"))
        shown = "" if isinstance(got, (dict, list)) or kind in _FIXED else \
            f" (got {text if len(text) <= 60 else text[:57] + '...'})"
        msg = NOT_A_NUMBER if isinstance(got, NotANumber) else NOT_FINITE if kind == "finite_number" else \
            _FIXED.get(kind, e["msg"].removeprefix("Value error, ").rstrip("."))
        if kind == "extra_forbidden":
            msg += did_you_mean(str(e["loc"][-1]), owner.model_fields) if owner else ""
        elif kind == "union_tag_invalid":
            msg, shown = f"unknown value {got.get('name')!r} (expected one of {e['ctx']['expected_tags']})", ""
        where = path + ".name" if kind.startswith("union_tag") else path or "(top level)"
        lines.setdefault(where if member else n, (where, {}, shown))[1][msg] = None  # a union's members: one line
    return [f"{where}: {' or '.join(msgs)}{shown}" for where, msgs, shown in lines.values()]


def lr_find_problems(settings: dict[str, Any]) -> list[str]:
    """``--start-lr``/``--end-lr``/... problems of an LR range test's settings (finite,
    positive, start below end), checked before any sweep; [] when they are fine."""
    try:
        LRFind.model_validate(settings)
    except ValidationError as err:
        out = []
        for e in err.errors():
            where = f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else ""
            msg = e["msg"].removeprefix("Value error, ").rstrip(".")
            if e["type"] == "finite_number":
                msg = "must be a finite number"
            out.append(f"{where}{msg} (got {e.get('input')!r})" if e["loc"] else msg)
        return out
    return []
