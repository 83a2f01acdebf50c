"""Reading an LR range test: where it diverged, what to suggest, and whether to trust it.

Pure functions over a sweep's ``(lrs, losses)`` (raw loss of each step, lr rising), no
torch. :func:`analyse_sweep` is the whole reading:

1. **Divergence.** The sweep is cut at the first non-finite loss or the first step whose
   smoothed loss exceeds ``k`` x the best smoothed loss so far (fastai's rule, ``k`` = 4):
   :class:`DivergenceWatch` applies it step by step, so the sweep itself stops there.
2. **Smoothing** adapts to the sweep's length: a window of ``n // 10`` steps (1 to 25),
   an exponential average while sweeping (it must not look ahead) and a centred moving
   average afterwards (no lag, so a suggestion is not pushed to a higher lr).
3. **Suggestions** only from the points before the divergence *and* up to the lowest
   smoothed loss: no suggestion lies past either, so a bump after a blow-up cannot win.

   * ``steepest``: where the smoothed loss falls fastest per step (the first tenth skipped;
     central differences, so the lowest point itself, where the slope is ~0, never wins);
   * ``valley``: fastai's rule, 1/3 + 1/6 of the way down the longest decreasing run,
     looked for in the descent (from where the loss has fallen 10 % of its total fall);
   * ``min_div_10``: the lr of the lowest smoothed loss, divided by 10.

4. **Verdict.** A sweep is *inconclusive* when the smoothed loss never falls meaningfully
   (less than 5 % below where it started, or not clearly more than its noise), when the
   lowest loss is at the very start, or when too few points come before the divergence.
   It then carries a reason and advice (more iterations, a wider range, a larger batch)
   and no recommended lr.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

SUGGESTIONS = ("steepest", "valley", "min_div_10")
LABELS = {"steepest": "steepest gradient", "valley": "valley", "min_div_10": "minimum / 10"}
REASONS = {
    "valley": "valley: the longest steep descent of the smoothed loss, robust to noise",
    "steepest": "steepest: where the smoothed loss falls fastest (noisier than the valley)",
    "min_div_10": "minimum/10: a tenth of the lr at the lowest loss, a conservative choice",
}
PREFERENCE = ("valley", "steepest", "min_div_10")

DIVERGE_K = 4.0        # stop when the smoothed loss exceeds 4 x the best smoothed loss
MAX_WINDOW = 25        # smoothing window cap (steps)
MIN_DROP = 0.05        # the smoothed loss must fall >= 5 % below its starting level...
NOISE_MULT = 3.0       # ...and by more than 3 standard errors of that fall
MIN_POINTS = 5         # finite points needed before the divergence
DESCENT_FRACTION = 0.1  # the descent starts where the loss has fallen 10 % of its total fall


def smoothing_window(n: int) -> int:
    """Steps averaged by the smoothing for a sweep of ``n`` steps: ``n // 10``, 1 to 25."""
    return max(1, min(MAX_WINDOW, int(n) // 10))


def ema_factor(window: int) -> float:
    """The exponential-average weight of the newest loss for a ``window``-step window."""
    return 2.0 / (max(1, window) + 1)


class DivergenceWatch:
    """Feed each step's raw loss to :meth:`update`; it returns True once the sweep has
    diverged: a non-finite loss, or the exponentially smoothed loss above ``k`` x the best
    smoothed loss so far. ``reason`` then says which."""

    def __init__(self, num_iter: int, k: float = DIVERGE_K, window: int | None = None):
        self.k = float(k)
        self.alpha = ema_factor(smoothing_window(num_iter) if window is None else window)
        self.ema: float | None = None
        self.best = math.inf
        self.steps = 0
        self.reason: str | None = None

    def update(self, loss: float) -> bool:
        self.steps += 1
        if self.reason is not None:
            return True
        if not math.isfinite(loss):
            self.reason = f"the loss was {loss} at step {self.steps}"
            return True
        self.ema = loss if self.ema is None else self.alpha * loss + (1 - self.alpha) * self.ema
        if self.best > 0 and self.ema > self.k * self.best:
            self.reason = (f"the smoothed loss {self.ema:.3g} exceeded {self.k:g} x its best "
                           f"({self.best:.3g}) at step {self.steps}")
            return True
        self.best = min(self.best, self.ema)
        return False


def divergence_index(losses: Sequence[float], num_iter: int | None = None, k: float = DIVERGE_K,
                     window: int | None = None) -> tuple[int | None, str | None]:
    """(index of the first diverged step, why), or (None, None): :class:`DivergenceWatch`
    applied to a whole sweep."""
    watch = DivergenceWatch(num_iter or len(losses), k, window)
    for i, v in enumerate(losses):
        if watch.update(float(v)):
            return i, watch.reason
    return None, None


def smooth(losses: Sequence[float], window: int) -> np.ndarray:
    """Centred moving average over ``window`` steps (made odd), narrower at the ends."""
    a = np.asarray(losses, dtype=float)
    half = max(0, int(window)) // 2
    if half == 0 or a.size < 3:
        return a.copy()
    c = np.concatenate([[0.0], np.cumsum(a)])
    idx = np.arange(a.size)
    lo = np.maximum(0, idx - half)
    hi = np.minimum(a.size, idx + half + 1)
    return (c[hi] - c[lo]) / (hi - lo)


def valley_index(losses: Sequence[float]) -> int:
    """fastai's valley: 1/3 + 1/6 down the longest decreasing subsequence of ``losses``."""
    n = len(losses)
    max_start = max_end = 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def _fmt_steps(n: int) -> str:
    return f"{n} step{'s' if n != 1 else ''}"


@dataclass
class SweepAnalysis:
    """What :func:`analyse_sweep` reads from a sweep."""

    smoothed: list[float]                  # per step; NaN from the divergence on
    window: int                            # smoothing window (steps)
    divergence_index: int | None           # first diverged step, None if it never diverged
    divergence_reason: str | None
    minimum_index: int | None              # lowest smoothed loss (before the divergence)
    suggestions: dict[str, float | None]
    recommended: float | None
    recommended_by: str | None
    reason: str                            # why this lr, or why none
    conclusive: bool
    inconclusive_reason: str | None = None
    cause: str | None = None               # inconclusive: flat, noisy, start, early or short
    advice: list[str] = field(default_factory=list)
    drop: float | None = None              # relative fall of the smoothed loss (0.25 = 25 %)
    noise: float | None = None             # robust std of the raw loss from step to step
    significance: float | None = None      # the fall / the least fall that is not noise (>= 1 to trust)
    notes: list[str] = field(default_factory=list)
    clipped: list[str] = field(default_factory=list)  # suggestions clipped into [start_lr, end_lr]

    @property
    def verdict(self) -> str:
        return "ok" if self.conclusive else "inconclusive"


def recommend(suggestions: dict[str, float | None], prefer: str = "valley") -> tuple[float | None, str | None, str]:
    """(lr, which, reason): ``prefer`` when available, else the next in PREFERENCE."""
    if prefer not in SUGGESTIONS:
        raise ValueError(f"unknown suggestion {prefer!r}: expected one of {', '.join(SUGGESTIONS)}")
    order = (prefer,) + tuple(k for k in PREFERENCE if k != prefer)
    for k in order:
        if suggestions.get(k) is not None:
            reason = REASONS[k] if k == prefer else f"{REASONS[k]} ({LABELS[prefer]} unavailable)"
            return suggestions[k], k, reason
    return None, None, "no suggestion: the sweep has too few finite points"


def advice_for(cause: str, *, num_iter: int, start_lr: float, end_lr: float, recipe: bool = False) -> list[str]:
    """What to try after an inconclusive sweep, most useful first, for a ``cause`` of
    ``flat`` (never fell), ``noisy``, ``start`` (lowest at the start), ``early`` (diverged
    almost at once) or ``short`` (too few steps). ``recipe``: in recipe keys (for
    ``max_lr: auto``) rather than ``lr-find`` options."""
    iters = max(200, 2 * num_iter)
    if recipe:
        more = f"scheduler.lr_find.num_iter: {iters}"
        wider = f"a wider scheduler.lr_find.start_lr/end_lr (now {start_lr:.0e} to {end_lr:g})"
        lower = f"a lower scheduler.lr_find.start_lr (e.g. {start_lr / 100:.0e})"
        batch = "a larger data.batch_size"
        more_data = "more images (data.train_subset)"
    else:
        more = f"more iterations (--num-iter {iters}, or scheduler.lr_find.num_iter)"
        wider = (f"a wider range (now {start_lr:.0e} to {end_lr:g}; e.g. --start-lr 1e-7 --end-lr 10, "
                 "or scheduler.lr_find.start_lr/end_lr)")
        lower = f"a lower start (--start-lr {start_lr / 100:.0e}, or scheduler.lr_find.start_lr)"
        batch = "a larger batch for a less noisy loss (--batch-size 256, or data.batch_size)"
        more_data = "more training images if data.train_subset is small"
    return {
        "flat": [more, wider, batch],
        "noisy": [batch, more, more_data],
        "start": [lower, wider, more],
        "early": [lower, more, batch],
        "short": [more, wider],
    }[cause]


def analyse_sweep(
    lrs: Sequence[float], losses: Sequence[float], *, start_lr: float | None = None,
    end_lr: float | None = None, num_iter: int | None = None, k: float = DIVERGE_K,
    window: int | None = None, prefer: str = "valley",
) -> SweepAnalysis:
    """Read a sweep: divergence, smoothing, bounded suggestions, verdict (module docstring).

    ``lrs`` and ``losses`` are per step (the raw loss). ``num_iter`` is the length the sweep
    was planned for (it sets the smoothing window; default ``len(lrs)``). ``start_lr`` /
    ``end_lr`` bound the suggestions (default: the first and last lr).
    """
    lr_a = np.asarray(lrs, dtype=float)
    raw = np.asarray(losses, dtype=float)
    n_all = min(lr_a.size, raw.size)
    lr_a, raw = lr_a[:n_all], raw[:n_all]
    planned = int(num_iter or n_all)
    start = float(start_lr if start_lr is not None else (lr_a[0] if n_all else 0.0))
    end = float(end_lr if end_lr is not None else (lr_a[-1] if n_all else 0.0))
    w = smoothing_window(planned) if window is None else max(1, int(window))
    div, div_reason = divergence_index(raw, planned, k, w)
    keep = n_all if div is None else div
    smoothed_kept = smooth(raw[:keep], w)
    smoothed = np.full(n_all, np.nan)
    smoothed[:keep] = smoothed_kept
    out: dict[str, float | None] = dict.fromkeys(SUGGESTIONS)
    notes: list[str] = []
    clipped: list[str] = []
    if div is not None:
        notes.append(f"The loss diverged at step {div + 1} of {planned} (lr {lr_a[div]:.2e}): "
                     f"{div_reason}; only the {_fmt_steps(keep)} before it are used.")

    def result(conclusive: bool, why: str | None = None, cause: str | None = None, m=None, drop=None,
               noise=None, significance=None) -> SweepAnalysis:
        if conclusive:
            rec, which, reason = recommend(out, prefer)
        else:
            rec, which, reason = None, None, f"inconclusive: {why}"
        return SweepAnalysis(
            smoothed=[float(v) for v in smoothed], window=w, divergence_index=div,
            divergence_reason=div_reason, minimum_index=m, suggestions=dict(out), recommended=rec,
            recommended_by=which, reason=reason, conclusive=conclusive and rec is not None,
            inconclusive_reason=None if conclusive else why, cause=None if conclusive else cause,
            advice=advice_for(cause, num_iter=planned, start_lr=start, end_lr=end) if cause else [],
            drop=drop, noise=noise, significance=significance, notes=notes, clipped=clipped)

    if keep < MIN_POINTS:
        cause = "early" if div is not None else "short"
        what = (f"the loss diverged after {_fmt_steps(keep)}" if div is not None
                else f"the sweep has only {_fmt_steps(keep)}")
        return result(False, f"{what}; at least {MIN_POINTS} finite points are needed", cause)

    m = int(np.argmin(smoothed_kept))
    head = max(3, w)
    start_level = float(np.mean(raw[: min(head, keep)]))
    low = float(smoothed_kept[m])
    scale = abs(start_level) if start_level else 1.0
    drop = (start_level - low) / scale
    # noise: robust std of the raw loss from step to step, up to the minimum (the blow-up
    # after it is not noise). The fall must exceed NOISE_MULT standard errors of (start
    # level - smoothed minimum), plus the amount by which the lowest of the ~keep/width
    # independent smoothed values undershoots on a flat curve.
    width = 2 * (w // 2) + 1
    steps = np.diff(raw[: m + 1])
    noise = float(1.4826 * np.median(np.abs(steps - np.median(steps))) / math.sqrt(2)) if steps.size else 0.0
    samples = max(2.0, keep / width)
    noise_floor = noise * (NOISE_MULT * math.sqrt(1 / min(head, keep) + 1 / width)
                           + math.sqrt(2 * math.log(samples) / width))
    sig = (start_level - low) / noise_floor if noise_floor > 0 else None
    if m < max(2, keep // 20) or drop <= 0:
        return result(False, f"the lowest smoothed loss is at the start of the sweep (step {m + 1}, lr "
                      f"{lr_a[m]:.2e}): the loss never fell", "start", m, drop, noise, sig)
    if drop < MIN_DROP:
        return result(False, f"the smoothed loss fell only {100 * drop:.1f} % ({start_level:.3g} → "
                      f"{low:.3g}), less than the {100 * MIN_DROP:.0f} % a useful sweep shows", "flat",
                      m, drop, noise, sig)
    if sig is not None and sig < 1:
        return result(False, f"the smoothed loss fell {start_level - low:.3g} ({start_level:.3g} → {low:.3g}), "
                      f"within its noise (raw loss ± {noise:.3g} per step)", "noisy", m, drop, noise, sig)

    # Suggestions from the points up to the minimum (inclusive), never past it.
    skip = max(1, keep // 10) if m >= 4 else 0
    lo = min(skip, m - 2) if m >= 2 else 0
    seg_lr, seg = lr_a[lo: m + 1], smoothed_kept[lo: m + 1]
    if seg.size >= 3:
        # the gradient of the whole kept curve, read over the segment: central differences up
        # to the minimum itself (~0 there). np.gradient of the segment alone takes a one-sided
        # difference at its end, the last step *into* the minimum, and the minimum won.
        slope = np.gradient(smoothed_kept)[lo: m + 1]
        out["steepest"] = float(seg_lr[int(slope.argmin())])
        # fastai's valley, over the descent only: from the last point still within 10 % of
        # the total fall of the starting level (in a flat, noisy start the longest
        # decreasing run would otherwise begin among the noise, far too early)
        level = start_level - DESCENT_FRACTION * (start_level - low)
        above = np.flatnonzero(smoothed_kept[: m + 1] >= level)
        d0 = int(above[-1]) if above.size else lo
        d0 = max(lo, min(d0, m - 2))
        out["valley"] = float(lr_a[d0 + valley_index(list(smoothed_kept[d0: m + 1]))])
    else:
        notes.append(f"steepest gradient and valley unavailable: only {seg.size} point(s) before the "
                     "lowest loss.")
    out["min_div_10"] = float(lr_a[m]) / 10

    lo_lr, hi_lr = min(start, end), max(start, end)
    for key, v in out.items():
        if v is None:
            continue
        if not math.isfinite(v):
            out[key] = None
            notes.append(f"{LABELS[key]} unavailable: not finite.")
        elif not lo_lr <= v <= hi_lr:
            out[key] = min(max(v, lo_lr), hi_lr)
            clipped.append(key)
            notes.append(f"{LABELS[key]} {v:.2e} clipped to the sweep range ({out[key]:.2e}).")
    if div is None and m >= keep - max(2, w // 2):
        notes.append(f"The loss was still falling at the end of the sweep (lr {lr_a[keep - 1]:.2e}): "
                     "a higher end_lr may find a better lr.")
    return result(True, m=m, drop=drop, noise=noise, significance=sig)
