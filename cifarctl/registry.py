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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cifarctl.errors import UsageError, did_you_mean


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
    """Build the model registered as ``name`` with keyword arguments from the recipe."""
    entry = get_entry(name)
    try:
        return entry.fn(**kwargs)
    except TypeError as exc:
        raise UsageError(f"model {entry.name!r}: bad model_args ({exc})") from exc


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching an fnmatch pattern, sorted (aliases excluded)."""
    _load()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    _load()
    return name in _REGISTRY or name in _ALIASES
