"""The observations students write under "Analysis" in an assignment write-up, computed
from a run's epoch log and its evaluation: each one line with its number, plain facts.

``findings(metrics, target_acc, eval_result)`` returns ``[(key, text), ...]`` in the order a
write-up gives them: target, train-test gap and its trend, whether the test accuracy was
still rising, the weakest and strongest classes, the most confused pair.
"""

from __future__ import annotations

from typing import Any

TAIL = 3            # epochs whose change counts as "the last epochs"
RISING_PTS = 0.5    # test accuracy gained over the tail that counts as still rising (points)
GAP_TREND_PTS = 1.0  # change of the train-test gap over the tail that counts as a trend


def _acc_rows(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in metrics if isinstance(m.get("test_acc"), (int, float))]


def target_finding(metrics: list[dict[str, Any]], target_acc: float | None) -> str | None:
    """The epoch the accuracy target was first met, or how far short the best epoch ended."""
    rows = _acc_rows(metrics)
    if target_acc is None or not rows:
        return None
    for m in rows:
        if m["test_acc"] >= target_acc:
            return (f"Target {target_acc:.2f} % first met in epoch {m['epoch']} of {len(rows)} "
                    f"({m['test_acc']:.2f} %).")
    best = max(rows, key=lambda m: m["test_acc"])
    return (f"Target {target_acc:.2f} % not met: the best epoch ({best['epoch']}) reached {best['test_acc']:.2f} %, "
            f"{target_acc - best['test_acc']:.2f} points short.")


MIN_EPOCHS_TO_JUDGE = TAIL + 2  # fewer epochs: no verdict on fitting


def gap_finding(metrics: list[dict[str, Any]], judge: bool = True) -> str | None:
    """Train minus test accuracy at the end, and how it moved over the last epochs; a
    verdict on fitting only when ``judge`` and the run has :data:`MIN_EPOCHS_TO_JUDGE` epochs
    (train accuracy is averaged over each epoch with augmentation on: after an epoch or two
    test above train is what every run shows)."""
    rows = [m for m in _acc_rows(metrics) if isinstance(m.get("train_acc"), (int, float))]
    if not rows:
        return None
    last = rows[-1]
    gap = last["train_acc"] - last["test_acc"]
    text = (f"Train-test gap at the end: {gap:+.2f} points (train {last['train_acc']:.2f} %, "
            f"test {last['test_acc']:.2f} %)")
    if len(rows) > TAIL:
        before = rows[-1 - TAIL]
        was = before["train_acc"] - before["test_acc"]
        change = gap - was
        trend = ("widening" if change >= GAP_TREND_PTS else "narrowing" if change <= -GAP_TREND_PTS else "steady")
        text += f", {trend} ({was:+.2f} -> {gap:+.2f} over the last {TAIL} epochs)"
    if not judge or len(rows) < MIN_EPOCHS_TO_JUDGE:
        why = "a reduced run" if not judge else f"{len(rows)} epoch{'s' if len(rows) != 1 else ''}"
        return text + f"; no verdict on fitting from {why}."
    if gap < 0:
        text += ": test above train, under-fitting the augmented training set (room for a larger model or less regularisation)"
    elif len(rows) > TAIL and gap > 0 and gap - was >= GAP_TREND_PTS:
        text += ": over-fitting grows"
    elif gap > 5:
        text += ": over-fitting"
    else:
        text += ": no sign of over-fitting"
    return text + "."


def trend_finding(metrics: list[dict[str, Any]]) -> str | None:
    """Whether the test accuracy was still rising over the last epochs or had plateaued."""
    rows = _acc_rows(metrics)
    if len(rows) <= TAIL:
        return None
    last, before = rows[-1], rows[-1 - TAIL]
    gain = last["test_acc"] - before["test_acc"]
    best = max(rows, key=lambda m: m["test_acc"])
    if gain >= RISING_PTS:
        return (f"Test accuracy still rising: {gain:+.2f} points over the last {TAIL} epochs "
                f"({before['test_acc']:.2f} -> {last['test_acc']:.2f} %); more epochs would likely help.")
    if best["epoch"] < last["epoch"] - TAIL:
        return (f"Test accuracy peaked in epoch {best['epoch']} ({best['test_acc']:.2f} %) and ended at "
                f"{last['test_acc']:.2f} %; later epochs did not help.")
    return (f"Test accuracy plateaued: {gain:+.2f} points over the last {TAIL} epochs "
            f"(ended at {last['test_acc']:.2f} %).")


def class_findings(eval_result: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The weakest and strongest classes, and the most confused pair, from an eval.json dict."""
    if not eval_result:
        return []
    per = [c for c in eval_result["per_class"] if c["accuracy"] is not None]
    out = []
    if per:
        ranked = sorted(per, key=lambda c: (c["accuracy"], c["class"]))
        weak = ", ".join(f"{c['class']} {c['accuracy']:.1f} %" for c in ranked[:2])
        strong = ", ".join(f"{c['class']} {c['accuracy']:.1f} %" for c in ranked[::-1][:2])
        out += [("weakest", f"Weakest classes: {weak}."), ("strongest", f"Strongest classes: {strong}.")]
    if eval_result.get("most_confused"):
        c = eval_result["most_confused"][0]
        out.append(("confused", f"Most confused: {c['true']} predicted as {c['predicted']} "
                                f"{c['count']:,} times ({c['percent_of_true']:.1f} % of the {c['true']} images)."))
    return out


def findings(metrics: list[dict[str, Any]], target_acc: float | None,
             eval_result: dict[str, Any] | None = None, *, reduced: bool = False) -> list[tuple[str, str]]:
    """Every finding that the data allows, as ``(key, one line)``; a ``reduced`` run (fewer
    epochs or images than its recipe) gets no advice on fitting or on training longer."""
    out = []
    for key, text in (("target", target_finding(metrics, target_acc)), ("gap", gap_finding(metrics, not reduced)),
                      ("trend", None if reduced else trend_finding(metrics))):
        if text:
            out.append((key, text))
    return out + class_findings(eval_result)
