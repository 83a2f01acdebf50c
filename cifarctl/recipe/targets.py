"""What a run is judged against: the recipe's ``target`` (the seed's figures), the
assignment's threshold (``rules.min_test_acc``) and the best public submission; used by
``train``'s last lines, ``report`` and ``compare``, on a recipe or on a mapping read back
from a run's recipe.yaml."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cifarctl.recipe.schema import Recipe, Target


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v


def reference(recipe: Recipe) -> dict:
    """The figures a run is read against (``train``'s last lines, ``report``): the seed's,
    the assignment's threshold and the best public submission's (with its source)."""
    rules = recipe.rules
    best = rules.best_public if rules else None
    return {"seed": recipe.target.min_test_acc, "assignment": rules.min_test_acc if rules else None,
            "best_public": best.acc if best else None, "best_public_source": best.source if best else None}


def assignment_threshold(recipe: Recipe | Mapping[str, Any] | None) -> float | None:
    """The assignment's accuracy threshold (``rules.min_test_acc``) of a recipe, or of a
    mapping read back from a run's recipe.yaml; None when it has none."""
    if isinstance(recipe, Recipe):
        return recipe.rules.min_test_acc if recipe.rules is not None else None
    rules = recipe.get("rules") if isinstance(recipe, Mapping) else None
    return _number(rules.get("min_test_acc")) if isinstance(rules, Mapping) else None


def target_verdict(target: Target | Mapping[str, Any] | None, *, best_acc: float | None, params: int | None,
                   epochs: int, assignment: float | None = None) -> dict:
    """The recipe's ``target`` checked: best test acc against the seed's figure
    (``target.min_test_acc``) and against the assignment's threshold (``assignment``, the
    rules' ``min_test_acc``), params (when known), epochs. PASS means every check: a run
    above the seed's figure but below the assignment's threshold fails.

    ``{"passed", "checks": [{"name", "target", "value", "passed", "text"}]}``; ``passed`` is
    True when there is nothing to check. ``target`` may be a mapping read back from a
    run's recipe.yaml (values that are not numbers are not checked).
    """
    if isinstance(target, Target):
        target = target.model_dump()
    get = (lambda k: _number(target.get(k))) if isinstance(target, Mapping) else (lambda k: None)
    checks = []
    shown = "n/a" if best_acc is None else f"{best_acc:.2f}%"
    for name, lo, whose in (("min_test_acc", get("min_test_acc"), "seed's figure"),
                            ("assignment_acc", _number(assignment), "assignment's threshold")):
        if lo is None:
            continue
        ok = best_acc is not None and best_acc >= lo
        checks.append({"name": name, "target": lo, "value": best_acc, "passed": ok,
                       "text": f"best test acc {shown} {'>=' if ok else '<'} {lo:.2f}% ({whose})"})
    most = get("max_params")
    if most is not None and params is not None:
        ok = params <= most
        checks.append({"name": "max_params", "target": most, "value": params, "passed": ok,
                       "text": f"params {params:,} {'<=' if ok else '>'} {most:,}"})
    most = get("max_epochs")
    if most is not None:
        ok = epochs <= most
        checks.append({"name": "max_epochs", "target": most, "value": epochs, "passed": ok,
                       "text": f"epochs {epochs} {'<=' if ok else '>'} {most}"})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}
