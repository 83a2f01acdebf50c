"""Which runs are the same set-up: group by the whole resolved recipe, seed aside.

Two runs belong together when every recipe setting that can change their results is
equal; only then is their spread "the spread over seeds". The set-up of a run is its
resolved ``recipe.yaml`` (completed with today's schema defaults), flattened to dotted
keys, minus the seed and the settings that cannot change results (:data:`NEUTRAL`:
worker counts, device-only speed knobs, texts, the target and rules, logging). ``data.source`` counts by
its file name, so the same archive at two paths is one set-up; ``scheduler.max_lr`` of
a run whose range test chose it (``lr_find.json`` in the folder) counts as ``auto``.

Groups that share a recipe name are labelled by the keys in which they differ:
``s8_bn [data.train_subset=3000]``. Plain functions over dicts; no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cifarctl.recipe.load import flatten, with_defaults

T = TypeVar("T")

# Settings that cannot change a run's results (prefixes of dotted keys).
NEUTRAL = (
    "seed",                     # what a group is taken over
    "schema_version", "description", "assignment", "target",   # texts and the verdict's bar
    "rules",                    # the assignment's rules: checked, not trained (older runs have none)
    "tensorboard",              # logging only
    "data.workers",             # DataLoader processes
    "data.test_batch_size",     # evaluation batch (eval mode: no batch statistics)
    "data.augment_backend",     # the same transforms, on the device or in workers
    "channels_last", "compile",  # memory format and compilation: speed only
)
MAX_LABEL_KEYS = 3
MAX_VALUE_CHARS = 24


def _neutral(key: str) -> bool:
    return any(key == n or key.startswith(n + ".") for n in NEUTRAL)


def setup_of(recipe: dict[str, Any] | None, *, lr_auto: bool = False,
             fallback: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's set-up: its resolved recipe, flattened, minus :data:`NEUTRAL` keys.

    ``recipe`` is the run's ``recipe.yaml`` (None or {} when missing: ``fallback``, e.g.
    name, model and planned epochs from summary.json, stands in). ``lr_auto``: the run's
    ``scheduler.max_lr`` was chosen by its range test.
    """
    if recipe:
        flat = flatten(with_defaults(recipe), keep_empty=True)
    else:
        flat = {k: v for k, v in (fallback or {}).items() if v is not None}
        flat["recipe.yaml"] = "missing"
    out = {k: v for k, v in flat.items() if not _neutral(k)}
    src = out.get("data.source")
    if isinstance(src, str) and ("/" in src or "\\" in src):
        out["data.source"] = src.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if lr_auto and "scheduler.max_lr" in out:
        out["scheduler.max_lr"] = "auto"
    return out


def _frozen(setup: dict[str, Any]) -> str:
    return json.dumps(setup, sort_keys=True, default=str)


def group_by_setup(items: Sequence[T], setup: Callable[[T], dict[str, Any]]) -> list[list[T]]:
    """Items with equal set-ups together, groups in order of their first item."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(_frozen(setup(item)), []).append(item)
    return list(groups.values())


def differing_keys(setups: Sequence[dict[str, Any]]) -> list[str]:
    """Keys whose values are not the same in all ``setups`` (a missing key counts), in
    the order they first appear."""
    keys: dict[str, None] = {}
    for s in setups:
        keys.update(dict.fromkeys(s))
    return [k for k in keys if len({_frozen({"v": s[k]}) if k in s else "\0missing" for s in setups}) > 1]


def fmt_value(v: Any) -> str:
    """A setting's value in a label: plain scalars, compact lists, long ones shortened."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (int, str)):
        text = str(v)
    else:
        text = json.dumps(v, separators=(",", ":"), default=str)
    if len(text) > MAX_VALUE_CHARS:
        digest = hashlib.sha1(text.encode()).hexdigest()[:6]
        text = f"{text[:MAX_VALUE_CHARS - 8]}…#{digest}"
    return text


def labels(names: Sequence[str], setups: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """A label per group, and the settings that label names. A name used by one group
    is its label; groups that share a name get ``name [key=value, ...]`` with the keys in
    which they differ (at most 3 shown, then ``+N more``)."""
    by_name: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        by_name.setdefault(n, []).append(i)
    out = list(names)
    differs: list[dict[str, Any]] = [{} for _ in names]
    for name, idx in by_name.items():
        if len(idx) < 2:
            continue
        keys = [k for k in differing_keys([setups[i] for i in idx]) if k != "name"]
        for i in idx:
            differs[i] = {k: setups[i].get(k) for k in keys}
            shown = [f"{k}={fmt_value(setups[i][k]) if k in setups[i] else '-'}" for k in keys[:MAX_LABEL_KEYS]]
            more = f", +{len(keys) - MAX_LABEL_KEYS} more" if len(keys) > MAX_LABEL_KEYS else ""
            out[i] = f"{name} [{', '.join(shown)}{more}]" if shown else name
    seen: dict[str, int] = {}
    for i, label in enumerate(out):  # still equal (cut values): number them
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            out[i] = f"{label} #{seen[label]}"
    return out, differs


def seeds_differ(seeds: Sequence[int | None]) -> bool:
    """True when at least two known seeds differ: only then is a spread "over seeds"."""
    return len({s for s in seeds if s is not None}) >= 2


def finite_sum(values: Sequence[float]) -> float | None:
    """The exact sum of finite floats, or None when there are none or it overflows a float."""
    if not values:
        return None
    try:
        total = math.fsum(values)
    except (OverflowError, ValueError):  # "intermediate overflow in fsum", or an inf among them
        return None
    return total if math.isfinite(total) else None


def finite_mean(values: Sequence[float]) -> float | None:
    """The mean of finite floats, computed so that values near float's limit (``1e308``) do
    not overflow; None when there are none or a value is not finite."""
    if not values or not all(math.isfinite(v) for v in values):
        return None
    n = len(values)
    total = finite_sum(values)
    mean = total / n if total is not None else math.fsum(v / n for v in values)  # scaled: cannot overflow
    return mean if math.isfinite(mean) else None


def finite_stdev(values: Sequence[float]) -> float | None:
    """The sample standard deviation (n - 1) of two or more finite floats, scaled by the
    largest magnitude so that huge values do not overflow; None when it is not a finite float."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return None
    try:
        std = statistics.stdev(values)
        if math.isfinite(std):
            return std
    except (OverflowError, ValueError, statistics.StatisticsError):
        pass
    scale = max(abs(v) for v in values)  # values near float's limit: their spread in units of the largest
    try:
        std = statistics.stdev([v / scale for v in values]) * scale
    except (OverflowError, ValueError, statistics.StatisticsError):
        return None
    return std if math.isfinite(std) else None


def mean_std(values: Sequence[float | None], over_seeds: bool) -> tuple[float | None, float | None]:
    """Mean of the known values, and their sample standard deviation when ``over_seeds``
    and there are two or more (None otherwise: one run, or repeats of one seed). Never
    inf or nan: a value that is not finite is left out, and a mean or spread that would
    overflow is None."""
    vals = [f for f in (_float(v) for v in values) if f is not None]
    if not vals:
        return None, None
    std = finite_stdev(vals) if over_seeds and len(vals) > 1 else None
    return finite_mean(vals), std


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (inf, nan) replaced by None, through dicts, lists
    and tuples: what ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
