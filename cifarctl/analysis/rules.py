"""An assignment's rules, checked on the real model and recipe.

A recipe's ``rules:`` block (:class:`cifarctl.recipe.Rules`) says what its assignment
demands; the parameter and epoch budgets stay in ``target:``, with the seed's accuracy.
:func:`check_rules` measures each rule on the model built as training builds it, with the
same layer analysis ``summary`` uses (:func:`cifarctl.analysis.layers.summarize_recipe`),
and returns one row per rule: ``{"rule", "required", "measured", "ok", "structural"}``.
Structural rules (layers, receptive field, parameters, augmentation, optimizer, schedule,
batch) are known before training and ``train`` refuses a recipe that breaks one; the
accuracy threshold is judged when the run ends (``ok`` is None before).
"""

from __future__ import annotations

from typing import Any

REQUIREMENTS = ("depthwise_separable", "dilated_conv", "gap")


def _row(rule: str, required: Any, measured: Any, ok: bool | None, structural: bool = True) -> dict:
    return {"rule": rule, "required": str(required), "measured": str(measured), "ok": ok, "structural": structural}


def _convs(model) -> list[tuple[str, Any]]:
    from torch import nn

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


def _gap(summary) -> str | None:
    """A pooling layer whose output is 1x1 over its whole input: global average pooling."""
    for row in summary.layers:
        shape = row.get("output_shape") or []
        if "AvgPool" in row["type"] and len(shape) == 4 and shape[2] == shape[3] == 1:
            return row["name"]
    return None


def check_rules(recipe, *, best_acc: float | None = None, summary=None) -> list[dict]:
    """Every rule of ``recipe`` (its ``rules:`` block and its target's budgets), measured;
    ``summary``: the recipe's :func:`~cifarctl.analysis.layers.summarize_recipe`, when the
    caller has it already."""
    from cifarctl.analysis.layers import summarize_recipe
    from cifarctl.training.builders import build_model

    rules, target = recipe.rules, recipe.target
    if rules is None:
        return []
    summary = summary or summarize_recipe(recipe)
    model = build_model(recipe)
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
    steps = [next(iter(s)) if isinstance(s, dict) else str(s) for s in recipe.data.augment or []]
    for want in rules.augment:
        options = want.split("|")
        hit = next((s for s in steps if s in options), None)
        out.append(_row(f"augmentation {want}", "in data.augment", hit or "missing", hit is not None))
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
