"""The strict pydantic base of every schema (recipe sections, model arguments): unknown
keys are errors, every float is finite and a boolean is not a number.

Pydantic's own strict mode does not fit the numbers: a strict int or float refuses a
boolean but also a number written as a string (PyYAML reads ``1e-3`` as one) and a strict
int refuses ``1.0``, which the recipes accept; and a strict model refuses a YAML list for a
tuple. So a boolean given for a number is marked here (:class:`NotANumber`) and pydantic's
lax mode refuses the mark at its key. A boolean field is pydantic's ``StrictBool`` instead
(a number or a string such as ``yes`` is not a boolean): in the recipe schema, and in the
model arguments (:mod:`cifarctl.registry`).

It sits below both :mod:`cifarctl.recipe` and :mod:`cifarctl.registry` (which checks model
arguments against it), so neither has to import the other's schema.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator


class NotANumber:
    """Stands in for a boolean given where a number is expected, so that pydantic reports it
    at its key (its lax mode would read ``true`` as 1); see :func:`_mark_bools`."""

    def __init__(self, value: bool):
        self.value = value

    def __repr__(self) -> str:
        return "true" if self.value else "false"


NOT_A_NUMBER = "expected a number, not a boolean (true/false)"


def _mark_bools(annotation: Any, value: Any) -> Any:
    """``value`` with every boolean that stands where ``annotation`` wants a number (and no
    boolean) replaced by a :class:`NotANumber`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _mark_bools(args[0], value)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # Optional[X]: X's rule
            return _mark_bools(members[0], value)
        if bool in args or Any in args or not any(a in (int, float) for a in args):
            return value
        return NotANumber(value) if isinstance(value, bool) else value
    if annotation in (int, float):
        return NotANumber(value) if isinstance(value, bool) else value
    if origin in (tuple, list) and isinstance(value, (list, tuple)) and args:
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            args = (args[0],) * len(value)
        marked = [_mark_bools(a, v) for a, v in zip(args, value)] + list(value[len(args):])
        return marked if any(m is not v for m, v in zip(marked, value)) else value
    return value


class StrictModel(BaseModel):
    """The base of every schema section: unknown keys are errors, every float is finite
    (``.nan``, ``.inf`` and ``1e400`` are refused) and a boolean is not a number (pydantic's
    lax mode would read ``epochs: true`` as 1). Boolean fields are ``StrictBool``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = None
        for key, value in data.items():
            field = cls.model_fields.get(key) if isinstance(key, str) else None
            if field is None or isinstance(value, dict):
                continue
            marked = _mark_bools(field.annotation, value)
            if marked is not value:
                out = out if out is not None else dict(data)
                out[key] = marked
        return data if out is None else out


