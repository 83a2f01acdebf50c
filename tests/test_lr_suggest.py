"""Reading LR range tests (cifarctl.training.lr_suggest) on synthetic loss curves: clean,
diverging tail, bump after a blow-up, flat, noisy, short, rising."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cifarctl.training.lr_suggest import (
    MIN_POINTS,
    DivergenceWatch,
    analyse_sweep,
    divergence_index,
    smooth,
    smoothing_window,
    valley_index,
)


def textbook(n: int = 100, start: float = 1e-7, end: float = 10.0, blow_up: bool = True):
    """Flat, a descent around 1e-3..1e-1 (steepest at 1e-2), then (blow_up) a rising tail."""
    lrs = np.geomspace(start, end, n)
    x = np.log10(lrs)
    loss = 2.3 - 1.0 / (1 + np.exp(-(x + 2) * 3))
    if blow_up:
        loss = loss + np.where(x > -0.5, (x + 0.5) ** 2 * 4, 0)
    return lrs, loss


def assert_bounded(a, lrs) -> None:
    """No suggestion past the divergence or the minimum, none outside the sweep."""
    assert a.minimum_index is not None
    limit = lrs[a.minimum_index]
    if a.divergence_index is not None:
        assert a.minimum_index < a.divergence_index
    for name, v in a.suggestions.items():
        if v is not None:
            assert math.isfinite(v), (name, v, limit)
            assert lrs[0] <= v <= limit * (1 + 1e-9), (name, v, limit)


def test_smoothing_window_adapts_to_the_sweep_length():
    assert [smoothing_window(n) for n in (5, 8, 20, 100, 250, 1000)] == [1, 1, 2, 10, 25, 25]
    y = np.array([1.0, 5.0, 1.0, 5.0, 1.0])
    assert np.allclose(smooth(y, 1), y)
    s = smooth(y, 3)  # centred: no lag, narrower at the ends
    assert s[2] == pytest.approx(11 / 3)
    assert s[0] == pytest.approx(3.0)


def test_clean_curve():
    lrs, loss = textbook()
    a = analyse_sweep(lrs, loss, num_iter=100)
    assert a.conclusive
    assert a.verdict == "ok"
    assert a.recommended_by == "valley"
    assert a.window == 10
    assert_bounded(a, lrs)
    for v in a.suggestions.values():
        assert 1e-3 < v < 1e-1
    assert a.recommended == a.suggestions["valley"]
    assert a.suggestions["min_div_10"] == pytest.approx(lrs[a.minimum_index] / 10)


def test_diverging_tail_stops_and_bounds_the_suggestions():
    lrs, loss = textbook()
    loss = loss.copy()
    loss[70:] = np.geomspace(3, 1e4, 30)  # blows up from lr ~ 1e-2 on
    a = analyse_sweep(lrs, loss, num_iter=100)
    assert a.divergence_index is not None
    assert 70 < a.divergence_index <= 78  # the smoothing lags a few steps
    assert all(math.isnan(v) for v in a.smoothed[a.divergence_index:])
    assert a.conclusive
    assert_bounded(a, lrs)
    assert any("diverged at step" in n for n in a.notes)
    # the same point online: the sweep stops there
    watch = DivergenceWatch(100)
    stopped = next(i for i, v in enumerate(loss) if watch.update(float(v)))
    assert stopped == a.divergence_index == divergence_index(loss, 100)[0]


def test_bump_after_divergence_is_never_suggested():
    """The loss blows up, collapses back to chance (2.3) and falls again: a steep "descent"
    on the bump's far side that steepest-gradient alone would pick."""
    lrs, loss = textbook()
    loss = loss.copy()
    loss[76:] = np.concatenate([np.linspace(2.0, 4.5, 6), np.linspace(4.5, 2.3, 8), np.full(10, 2.3)])
    a = analyse_sweep(lrs, loss, num_iter=100)
    assert a.conclusive
    assert_bounded(a, lrs)
    assert a.minimum_index < 77
    assert max(v for v in a.suggestions.values()) <= lrs[76]


def test_non_finite_loss_is_divergence():
    lrs, loss = textbook(60)
    loss = loss.copy()
    loss[40:] = np.nan
    a = analyse_sweep(lrs, loss, num_iter=60)
    assert a.divergence_index == 40
    assert "nan" in a.divergence_reason
    assert_bounded(a, lrs)


def test_flat_curve_is_inconclusive_with_advice():
    rng = np.random.default_rng(0)
    lrs = np.geomspace(1e-7, 10, 100)
    loss = 2.3 + rng.normal(0, 0.03, 100)
    a = analyse_sweep(lrs, loss, num_iter=100)
    assert not a.conclusive
    assert a.verdict == "inconclusive"
    assert a.recommended is None
    assert a.recommended_by is None
    assert a.reason.startswith("inconclusive:")
    assert a.inconclusive_reason
    text = " ".join(a.advice)
    assert "more iterations" in text
    assert "wider range" in text
    assert "larger batch" in text


def test_noisy_curves():
    rng = np.random.default_rng(1)
    lrs, loss = textbook()
    # moderate noise on a real descent: still read, suggestions in the descent
    a = analyse_sweep(lrs, loss + rng.normal(0, 0.1, 100), num_iter=100)
    assert a.conclusive
    assert_bounded(a, lrs)
    assert 1e-3 < a.recommended < 1e-1
    # a small descent (15 %) drowned in noise: inconclusive, a larger batch first
    x = np.log10(lrs)
    small = 2.3 - 0.35 / (1 + np.exp(-(x + 2) * 3))
    a = analyse_sweep(lrs, small + rng.normal(0, 1.0, 100), num_iter=100)
    assert not a.conclusive
    assert a.recommended is None
    assert "noise" in a.inconclusive_reason or "fell only" in a.inconclusive_reason or \
        "start of the sweep" in a.inconclusive_reason


def test_noise_rule_alone():
    """A fall larger than 5 % but within the noise of the smoothed loss."""
    lrs = np.geomspace(1e-5, 1, 40)
    rng = np.random.default_rng(3)
    loss = np.linspace(2.3, 2.0, 40) + rng.normal(0, 0.6, 40)
    a = analyse_sweep(lrs, loss, num_iter=40)
    assert not a.conclusive
    assert a.advice
    assert a.advice[0].startswith(("a larger batch", "more iterations", "a lower start"))


def test_rising_curve_and_too_short_sweep():
    lrs = np.geomspace(1e-3, 1, 30)
    a = analyse_sweep(lrs, np.linspace(1, 3, 30), num_iter=30)
    assert not a.conclusive
    assert "start of the sweep" in a.inconclusive_reason
    assert "lower start" in a.advice[0]
    a = analyse_sweep(lrs[:3], [2.3, 2.2, 2.1], num_iter=30)
    assert not a.conclusive
    assert f"at least {MIN_POINTS}" in a.inconclusive_reason
    a = analyse_sweep(lrs[:3], [2.3, 2.2, float("inf")], num_iter=30)
    assert not a.conclusive
    assert "diverged after 2 steps" in a.inconclusive_reason


def test_still_falling_and_clipping():
    lrs, loss = textbook(60, 1e-7, 1e-2, blow_up=False)  # ends inside the descent
    a = analyse_sweep(lrs, loss, num_iter=60)
    assert a.conclusive
    assert any("still falling" in n for n in a.notes)
    # the minimum early in a short range: minimum/10 falls below start_lr and is clipped
    lrs = np.geomspace(1e-3, 1, 30)
    loss = np.concatenate([np.linspace(2.3, 1.5, 6), np.linspace(1.6, 6.0, 24)])
    a = analyse_sweep(lrs, loss, start_lr=1e-3, end_lr=1, num_iter=30)
    assert a.conclusive
    assert "min_div_10" in a.clipped
    assert a.suggestions["min_div_10"] == pytest.approx(1e-3)


def test_valley_index_is_fastais_rule():
    # longest decreasing subsequence: 3.1 (index 1) down to 2.4 (index 8), 8 points; fastai
    # takes start = end - length = 0 and goes int(8/3) + int(8/6) = 3 points down from there
    losses = [3.0, 3.1, 3.0, 2.9, 2.8, 2.7, 2.6, 2.5, 2.4, 5.0]
    assert valley_index(losses) == 3
    assert valley_index([1.0, 2.0, 3.0]) == 0  # nothing decreases


def test_steepest_is_the_steepest_descent_not_the_minimum():
    """A textbook descent (steepest at lr 1e-2) that stalls for a step and then drops into
    its minimum at ~5e-2 before blowing up, as the s8_bn sweep on the JPEG copy does. The
    last step into the minimum is steeper than any central difference of the descent, so a
    one-sided difference at the segment's end made the minimum the "steepest" point."""
    lrs, loss = textbook(blow_up=False)
    loss = loss.copy()
    x = np.log10(lrs)
    mi = int(np.searchsorted(x, np.log10(5e-2)))
    steepest = int(np.argmin(np.gradient(loss)))  # the sigmoid's inflection
    assert abs(x[steepest] + 2) < 0.05
    step = float(loss[steepest + 1] - loss[steepest])  # its steepest step (< 0)
    loss[mi - 1] = loss[mi - 2]               # a stall...
    loss[mi] = loss[mi - 2] + 1.2 * step      # ...then a drop steeper than any step before
    loss[mi + 1:] = loss[mi] + np.geomspace(0.05, 50, loss.size - mi - 1)  # the blow-up
    a = analyse_sweep(lrs, loss, num_iter=100, window=1)
    assert a.minimum_index == mi
    assert a.conclusive
    assert a.suggestions["steepest"] != pytest.approx(lrs[mi])
    assert a.suggestions["steepest"] == pytest.approx(lrs[steepest])
    assert_bounded(a, lrs)
