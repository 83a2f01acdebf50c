"""The model registry: one dict, one decorator, duplicate names are an error.

Family modules in ``cifarctl.models`` register their variants when imported::

    @register_model(assignment="S8", description="S8 net with BatchNorm", aliases=("s8",))
    def s8_bn(**kwargs) -> nn.Module:
        return _build(norm="bn", **kwargs)

``create_model("s8_bn")`` imports every family (lazily, so the CLI starts fast) and
builds the network. This module itself never imports torch.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, StrictBool

from cifarctl.errors import UsageError, did_you_mean

# Types for the arguments of model constructors: a recipe's ``model_args`` are validated
# against the constructor's signature (names, types, these ranges) with the recipe.
Dropout = Annotated[float, Field(ge=0, lt=1)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Classes = Annotated[int, Field(ge=2)]  # model_args.num_classes: set from the data when a recipe leaves it out


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable[..., Any]
    assignment: str = ""
    description: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}
_LOADED = False


def register_model(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    assignment: str = "",
    description: str = "",
    aliases: tuple[str, ...] = (),
):
    """Register a model constructor under its function name (or ``name``)."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        key = name or f.__name__
        desc = description or (f.__doc__ or "").strip().splitlines()[0:1]
        if isinstance(desc, list):
            desc = desc[0] if desc else ""
        for k in (key, *aliases):
            if k in _REGISTRY or k in _ALIASES:
                raise ValueError(f"model name {k!r} is registered twice")
        _REGISTRY[key] = ModelEntry(key, f, assignment, desc, tuple(aliases))
        for a in aliases:
            _ALIASES[a] = key
        return f

    return wrap(fn) if fn is not None else wrap


def _load() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        import cifarctl.models  # noqa: F401  (registers every family)


def resolve_name(name: str) -> str:
    """The canonical name for ``name`` or an alias; UsageError listing close names."""
    _load()
    if name in _REGISTRY:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    known = list(_REGISTRY) + list(_ALIASES)
    raise UsageError(
        f"unknown model {name!r}{did_you_mean(name, known)}; `cifarctl models` lists them all"
    )


def get_entry(name: str) -> ModelEntry:
    return _REGISTRY[resolve_name(name)]


def create_model(name: str, **kwargs: Any):
    """Build the model registered as ``name`` with keyword arguments from the recipe.

    The arguments are checked first (:func:`check_model_args`), so that arguments stored
    in an older checkpoint or run are one :class:`UsageError` line, like a recipe's.
    """
    entry = get_entry(name)
    problems = check_model_args(entry.name, kwargs)
    if problems:
        raise UsageError(f"model {entry.name!r}: bad model_args: {'; '.join(problems)}")
    try:
        return entry.fn(**kwargs)
    except (TypeError, ValueError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"model {entry.name!r}: bad model_args ({first})") from exc


@functools.lru_cache(maxsize=None)
def _args_model(name: str):
    """A pydantic model of ``name``'s constructor arguments (from its signature and type hints)."""
    from pydantic import create_model as make

    from cifarctl.strict import StrictModel

    fn = _REGISTRY[name].fn
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - an unresolvable hint: check names only
        hints = {}
    fields: dict[str, Any] = {}
    open_ended = False
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            open_ended = True
            continue
        default = ... if p.default is p.empty else p.default
        hint = hints.get(p.name, Any)
        fields[p.name] = (StrictBool if hint is bool else hint, default)  # 1 or "yes" is not a boolean
    base = StrictModel
    if open_ended:  # **kwargs: any further name is passed on; the named ones are still checked
        from pydantic import ConfigDict

        base = type("OpenArgs", (StrictModel,), {"model_config": ConfigDict(extra="allow")})
    return make(f"{name}_model_args", __base__=base, **fields), open_ended


def check_model_args(name: str, args: Any) -> list[str]:
    """Problems of ``model_args`` for the model ``name`` ("model_args.key: what"), or [].

    Names are checked against the constructor's signature (closest name suggested), values
    against its type hints and the ranges they carry (e.g. ``dropout`` in [0, 1)); floats
    must be finite and booleans are not numbers.
    """
    from pydantic import ValidationError

    from cifarctl.strict import NOT_A_NUMBER, NotANumber

    if not isinstance(args, dict):
        return [f"model_args: expected a mapping of argument: value, got {type(args).__name__}"]
    canonical = resolve_name(name)
    model, open_ended = _args_model(canonical)
    known = list(model.model_fields)
    problems = []
    for key in args:
        if not isinstance(key, str) or (key not in model.model_fields and not open_ended):
            hint = did_you_mean(str(key), known) or (f" (it takes {', '.join(known)})" if known else
                                                     " (it takes none)")
            problems.append(f"model_args.{key}: unknown argument of model {canonical!r}{hint}")
    if problems:
        return problems
    try:
        model.model_validate(args)
    except ValidationError as err:
        for e in err.errors():
            loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in e["loc"]).replace(".[", "[")
            got = e.get("input")
            shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            msg = e["msg"].removeprefix("Value error, ").rstrip(".")
            if isinstance(got, NotANumber):
                msg = NOT_A_NUMBER
            elif e["type"] == "finite_number":
                msg = "must be a finite number (not nan or inf)"
            line = f"model_args.{loc}: {msg}{shown}"
            if line not in problems:
                problems.append(line)
    return problems


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching an fnmatch pattern, sorted (aliases excluded)."""
    _load()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    _load()
    return name in _REGISTRY or name in _ALIASES
