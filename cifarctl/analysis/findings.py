"""The observations students write under "Analysis" in an assignment write-up, computed
from a run's epoch log and its evaluation: each one line with its number, plain facts.

``findings(metrics, target_acc, eval_result)`` returns ``[(key, text), ...]`` in the order a
write-up gives them: target, train-test gap and its trend, whether the test accuracy was
still rising, the weakest and strongest classes, the most confused pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cifarctl.analysis.grouping import mean_std

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


# ------------------------------------------------------------------------ groups side by side
@dataclass
class GroupFigures:
    """One group's numbers for the Findings table: each ``(mean, std)``, std None without a
    spread over seeds (one run, or repeats of one seed)."""

    label: str
    n: int
    over_seeds: bool
    best: tuple[float | None, float | None]
    final: tuple[float | None, float | None]
    gap: tuple[float | None, float | None]          # train minus test accuracy at the last epoch
    seconds: tuple[float | None, float | None]
    epochs: int                                      # epochs logged (the most of its runs)
    threshold: float | None                          # the assignment's accuracy, else the recipe's target
    reached: list[int | None] = field(default_factory=list)   # per run: first epoch at the threshold
    per_class: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


def first_epoch_at(metrics: list[dict[str, Any]], threshold: float | None) -> int | None:
    """The first epoch whose test accuracy reached ``threshold`` (None: never, or no threshold)."""
    if threshold is None:
        return None
    return next((m["epoch"] for m in _acc_rows(metrics) if m["test_acc"] >= threshold), None)


def group_figures(group, evals: dict[str, dict[str, Any] | None], threshold: float | None) -> GroupFigures:
    """A :class:`~cifarctl.analysis.compare.RunGroup`'s figures; ``evals`` maps run names to
    their evaluation (eval.json dicts) for the per-class accuracies."""
    over = group.seeds_differ
    gaps = []
    for r in group.runs:
        rows = [m for m in _acc_rows(r.metrics) if isinstance(m.get("train_acc"), (int, float))]
        gaps.append(rows[-1]["train_acc"] - rows[-1]["test_acc"] if rows else None)
    per_class: dict[str, list[float]] = {}
    for r in group.runs:
        for c in (evals.get(r.name) or {}).get("per_class", []):
            if c.get("accuracy") is not None:
                per_class.setdefault(c["class"], []).append(c["accuracy"])
    return GroupFigures(
        label=group.label, n=group.n, over_seeds=over,
        best=(group.best_mean, group.best_std), final=(group.final_mean, group.final_std),
        gap=mean_std(gaps, over), seconds=(group.time_mean, group.time_std),
        epochs=max((r.epochs for r in group.runs), default=0), threshold=threshold,
        reached=[first_epoch_at(r.metrics, threshold) for r in group.runs],
        per_class={k: mean_std(v, over) for k, v in per_class.items()})


def pm(mean_std: tuple[float | None, float | None], unit: str = "", digits: int = 2) -> str:
    """``21.10 ± 0.28 %``; the mean alone without a spread; ``-`` without a mean."""
    mean, std = mean_std
    if mean is None:
        return "-"
    tail = f" {unit}" if unit else ""
    return f"{mean:.{digits}f}{tail}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}{tail}"


def _signed(mean_std: tuple[float | None, float | None]) -> str:
    mean, std = mean_std
    if mean is None:
        return "-"
    return f"{mean:+.2f}" + ("" if std is None else f" ± {std:.2f}")


def apart(a: tuple[float | None, float | None], b: tuple[float | None, float | None]) -> str | None:
    """Whether two ``(mean, std)`` differ by more than their spreads added: "beyond" or
    "within"; None when a spread is unknown (one run, or one seed)."""
    if a[0] is None or b[0] is None or a[1] is None or b[1] is None:
        return None
    return "beyond" if abs(a[0] - b[0]) > a[1] + b[1] else "within"


TOO_SHORT = "too short to conclude"


def _verdict(a, b, what: str, reduced: bool, digits: int = 2) -> str:
    """The clause after a comparison: whether the seeds' spread and the run length allow a
    conclusion (the spreads with the table's ``digits``)."""
    side = apart(a, b)
    if side is None:
        return f"one seed each, so the spread is unknown: {TOO_SHORT}"
    sa, sb = f"{a[1]:.{digits}f}", f"{b[1]:.{digits}f}"
    if side == "within":
        return f"within the seeds' spread (± {sa} and ± {sb}): {TOO_SHORT}"
    if reduced:
        return f"beyond the seeds' spread (± {sa}, ± {sb}), but from reduced runs: {TOO_SHORT}"
    return f"beyond the seeds' spread (± {sa}, ± {sb}): {what}"


def class_spread(figs: list[GroupFigures]) -> list[tuple[str, float]]:
    """Classes by how far apart the groups' mean accuracies are (largest first)."""
    classes = [c for c in figs[0].per_class if all(f.per_class.get(c, (None,))[0] is not None for f in figs)]
    spread = [(c, max(f.per_class[c][0] for f in figs) - min(f.per_class[c][0] for f in figs)) for c in classes]
    return sorted(spread, key=lambda t: (-t[1], t[0]))


def group_findings(figs: list[GroupFigures], reduced: str | None = None) -> list[str]:
    """Sentences about groups side by side, each drawn from the Findings table's numbers
    and quoting them; a comparison within the seeds' spread, or from ``reduced`` runs (the
    text says how), ends "too short to conclude"."""
    figs = [f for f in figs if f.best[0] is not None]
    if len(figs) < 2:
        return []
    out = []
    if reduced:
        out.append(f"These are reduced runs ({reduced}): the figures describe them, not the recipes, "
                   f"and every comparison below is {TOO_SHORT}.")
    ranked = sorted(figs, key=lambda f: -f.best[0])
    top, second, last = ranked[0], ranked[1], ranked[-1]
    lead = top.best[0] - second.best[0]
    how = ("mean ± std over seeds" if all(f.over_seeds for f in figs) else "one run each" if all(f.n == 1 for f in figs)
           else "mean ± std where a group has several seeds")
    order = ", ".join(f"{f.label} {pm(f.best, '%')}" for f in ranked)
    out.append(f"Best test accuracy ranks {order} ({how}). "
               f"{top.label} leads {second.label} by {lead:.2f} points, "
               + _verdict(top.best, second.best, f"{top.label} is ahead at this length", bool(reduced)) + ".")
    if len(figs) > 2:
        out.append(f"Between the first and the last, {top.label} and {last.label}, the difference is "
                   f"{top.best[0] - last.best[0]:.2f} points, "
                   + _verdict(top.best, last.best, f"{last.label} trails", bool(reduced)) + ".")
    gaps = [f for f in figs if f.gap[0] is not None]
    if len(gaps) >= 2:
        wide = max(gaps, key=lambda f: f.gap[0])
        narrow = min(gaps, key=lambda f: f.gap[0])
        text = (f"Train minus test accuracy at the last epoch: {', '.join(f'{f.label} {_signed(f.gap)}' for f in gaps)} "
                "points")
        short = bool(reduced) or min(f.epochs for f in gaps) < MIN_EPOCHS_TO_JUDGE
        if short:
            text += f"; no verdict on fitting from {'reduced runs' if reduced else 'so few epochs'}."
        elif all(f.gap[0] < 0 for f in gaps):
            text += ("; test above train in every group (train accuracy is taken with augmentation on): "
                     "none over-fits, " + f"{narrow.label} is furthest from it" + ".")
        else:
            text += (f"; {wide.label} fits its training set most beyond the test set, "
                     + _verdict(wide.gap, narrow.gap, f"more than {narrow.label}", False) + ".")
        out.append(text)
    thresholds = {f.threshold for f in figs}
    if len(thresholds) == 1 and None not in thresholds:
        (thr,) = thresholds
        parts = []
        for f in figs:
            hit = [e for e in f.reached if e is not None]
            if not hit:
                parts.append(f"{f.label} in none of {f.n} run{'s' if f.n != 1 else ''}")
            else:
                when = f"epoch {hit[0]}" if len(hit) == 1 else f"epoch {sum(hit) / len(hit):.1f} on average ({', '.join(map(str, hit))})"
                parts.append(f"{f.label} in {len(hit)} of {f.n} at {when}")
        if all(not any(e is not None for e in f.reached) for f in figs):
            out.append(f"No run reached the {thr:.2f} % threshold in its {max(f.epochs for f in figs)} epochs.")
        else:
            out.append(f"The {thr:.2f} % threshold was reached by " + "; ".join(parts) + ".")
    spread = class_spread(figs)
    if spread:
        cls, width = spread[0]
        hi = max(figs, key=lambda f: f.per_class[cls][0])
        lo = min(figs, key=lambda f: f.per_class[cls][0])
        out.append(f"Per class they differ most on {cls}: "
                   + ", ".join(f"{f.label} {pm(f.per_class[cls], '%', 1)}" for f in figs)
                   + f" ({width:.1f} points apart), "
                   + _verdict(hi.per_class[cls], lo.per_class[cls], f"{hi.label} recognises {cls} better", bool(reduced),
                              digits=1)
                   + ".")
        hardest = {f.label: min(f.per_class, key=lambda c: (f.per_class[c][0], c)) for f in figs}
        names = sorted(set(hardest.values()))
        if len(names) == 1:
            out.append(f"The hardest class is the same for every group: {names[0]} ("
                       + ", ".join(f"{f.label} {f.per_class[names[0]][0]:.1f} %" for f in figs) + ").")
        else:
            out.append("The hardest class: " + ", ".join(
                f"{label} {c} ({next(f for f in figs if f.label == label).per_class[c][0]:.1f} %)"
                for label, c in hardest.items()) + ".")
    if all(f.over_seeds for f in figs):
        wide = max(figs, key=lambda f: f.best[1])
        calm = min(figs, key=lambda f: f.best[1])
        if wide is not calm:
            out.append(f"Seed to seed, {wide.label} varies most (± {wide.best[1]:.2f} points of best accuracy) and "
                       f"{calm.label} least (± {calm.best[1]:.2f}).")
    return out
