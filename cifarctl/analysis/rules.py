"""An assignment's rules, checked on the real model and recipe.

A recipe's ``rules:`` block (:class:`cifarctl.recipe.schema.Rules`) says what its assignment
demands; the parameter and epoch budgets stay in ``target:``, with the seed's accuracy.
:func:`check_rules` measures each rule on the model built as training builds it, with the
same layer analysis ``summary`` uses (:func:`cifarctl.analysis.layers.summarize_recipe`),
and returns one row per rule: ``{"rule", "required", "measured", "ok", "structural"}``.
Structural rules (layers and their sequence, receptive field, parameters, augmentation and
its arguments, optimizer, schedule, batch) are known before training and ``train``
refuses a recipe that breaks one; the accuracy threshold is judged when the run ends
(``ok`` is None before).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from cifarctl.analysis.layers import summarize_recipe
from cifarctl.training.builders import build_model

REQUIREMENTS = ("depthwise_separable", "dilated_conv", "gap")


def _row(rule: str, required: Any, measured: Any, ok: bool | None, structural: bool = True) -> dict:
    return {"rule": rule, "required": str(required), "measured": str(measured), "ok": ok, "structural": structural}


def _convs(model) -> list[tuple[str, Any]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _depthwise_separable(model) -> str | None:
    """The first depthwise conv (groups == in_channels > 1) followed by a 1x1 conv, as 'a + b'."""
    convs = _convs(model)
    for (name, m), (nxt_name, nxt) in zip(convs, convs[1:]):
        if m.groups > 1 and m.groups == m.in_channels and tuple(nxt.kernel_size) == (1, 1):
            return f"{name} + {nxt_name}"
    return None


def _dilated(model) -> str | None:
    return next((name for name, m in _convs(model) if max(m.dilation) > 1), None)


def _kind(row: dict) -> str | None:
    """A layer's letter in an assignment's pattern: C (3x3 conv), c (1x1 conv), P (max-pool),
    GAP (average pooling to 1x1); None for layers the pattern does not name."""
    shape = row.get("output_shape") or []
    if row["type"] == "Conv2d":
        return {(3, 3): "C", (1, 1): "c"}.get(tuple(row.get("kernel") or ()), "conv")
    if row["type"] in ("MaxPool2d", "AdaptiveMaxPool2d"):
        return "P"
    if "AvgPool" in row["type"] and len(shape) == 4 and shape[2] == shape[3] == 1:
        return "GAP"
    return None


def _pattern(required: str, summary) -> tuple[str, bool]:
    """(what was measured, whether the model's layer sequence is ``required``'s)."""
    want = [re.sub(r"\d+$", "", tok) for tok in required.split()]
    have = [(k, row["name"]) for row in summary.layers if row["leaf"] and (k := _kind(row))]
    for i, (w, h) in enumerate(zip(want, have)):
        if w != h[0]:
            return f"layer {i + 1} is {h[0]} ({h[1]}), not {w}", False
    if len(want) != len(have):
        extra = f"{len(have) - len(want)} more: {have[len(want)][1]}" if len(have) > len(want) else "fewer"
        return f"{len(have)} layers, not {len(want)} ({extra})", False
    return " ".join(k for k, _ in have), True


def _gap(summary) -> str | None:
    """The first pooling layer whose output is 1x1 over its whole input: global average pooling."""
    return next((row["name"] for row in summary.layers if _kind(row) == "GAP"), None)


def _augment_row(want: str | dict, steps: list[tuple[str, dict]]) -> dict:
    if isinstance(want, str):
        hit = next((n for n, _ in steps if n in want.split("|")), None)
        return _row(f"augmentation {' or '.join(want.split('|'))}", "in data.augment", hit or "missing", hit is not None)
    (name, args), = want.items()
    required = ", ".join(f"{k}={_arg(v)}" for k, v in args.items())
    got = next((a for n, a in steps if n == name), None)
    if got is None:
        return _row(f"augmentation {name}", required, "missing", False)
    wrong = [f"{k}={_arg(got.get(k, '-'))}" for k, v in args.items() if _plain(got.get(k)) != _plain(v)]
    return _row(f"augmentation {name}", required, ", ".join(wrong) or "as required", not wrong)


def _arg(v: Any) -> str:
    """An argument's value, lists as ``[16, 16]``: a narrow table column wraps between the
    numbers instead of inside a word."""
    return "[" + ", ".join(_arg(x) for x in v) + "]" if isinstance(v, (list, tuple)) else str(v)


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def check_rules(recipe, *, best_acc: float | None = None, model=None, summary=None) -> list[dict]:
    """Every rule of ``recipe`` (its ``rules:`` block and its target's budgets), measured on
    ``model`` (built from the recipe when the caller has not built it) and ``summary`` (its
    :func:`~cifarctl.analysis.layers.summarize_recipe`, made here when not given)."""
    rules, target = recipe.rules, recipe.target
    if rules is None:
        return []
    model = build_model(recipe) if model is None else model
    summary = summary or summarize_recipe(recipe, model=model)
    out = []
    if target.max_params is not None:
        out.append(_row("parameters", f"<= {target.max_params:,}", f"{summary.total_params:,}",
                        summary.total_params <= target.max_params))
    if target.max_epochs is not None:
        out.append(_row("epochs", f"<= {target.max_epochs}", recipe.epochs, recipe.epochs <= target.max_epochs))
    if rules.min_rf is not None:
        rf = summary.receptive_field
        out.append(_row("receptive field", f">= {rules.min_rf}", rf, rf is not None and rf >= rules.min_rf))
    for kind in rules.forbid:
        found = [name for name, m in model.named_modules() if type(m).__name__ == kind]
        out.append(_row(f"no {kind}", "none", ", ".join(found[:3]) or "none", not found))
    for need in rules.require:
        where = {"depthwise_separable": lambda: _depthwise_separable(model), "dilated_conv": lambda: _dilated(model),
                 "gap": lambda: _gap(summary)}[need]()
        out.append(_row(need.replace("_", " "), "at least one", where or "none", where is not None))
    if rules.layer_pattern is not None:
        measured, ok = _pattern(rules.layer_pattern, summary)
        out.append(_row("layer pattern", rules.layer_pattern, measured, ok))
    steps = [next(iter(s.items())) if isinstance(s, dict) else (str(s), {}) for s in recipe.data.augment or []]
    steps = [(n, a if isinstance(a, dict) else {}) for n, a in steps]
    for want in rules.augment:
        out.append(_augment_row(want, steps))
    if rules.optimizer is not None:
        out.append(_row("optimizer", rules.optimizer, recipe.optimizer.name, recipe.optimizer.name == rules.optimizer))
    if rules.scheduler is not None:
        out.append(_row("scheduler", rules.scheduler, recipe.scheduler.name, recipe.scheduler.name == rules.scheduler))
    if rules.peak_epoch is not None:  # as a fraction of the assignment's epochs: a shorter run peaks as early
        pct = getattr(recipe.scheduler, "pct_start", None)
        full = target.max_epochs or recipe.epochs
        at = None if pct is None else pct * full
        out.append(_row("lr peak at epoch", f"{rules.peak_epoch:g} of {full}",
                        "-" if at is None else f"{at:.1f} of {full}",
                        at is not None and abs(at - rules.peak_epoch) <= 0.5))
    if rules.batch_size is not None:
        out.append(_row("batch size", rules.batch_size, recipe.data.batch_size,
                        recipe.data.batch_size == rules.batch_size))
    if rules.min_test_acc is not None:
        out.append(_row("assignment threshold", f">= {rules.min_test_acc:.2f} %",
                        "after training" if best_acc is None else f"{best_acc:.2f} %",
                        None if best_acc is None else best_acc >= rules.min_test_acc, structural=False))
    return out


def broken(rows: list[dict]) -> list[dict]:
    """The structural rules a recipe breaks."""
    return [r for r in rows if r["structural"] and r["ok"] is False]


def broken_line(rows: list[dict]) -> str:
    """One line naming every broken rule and what was measured (the layer, for layers)."""
    return "; ".join(f"{r['rule']}: required {r['required']}, measured {r['measured']}" for r in broken(rows))
