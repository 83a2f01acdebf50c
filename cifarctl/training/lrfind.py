"""The LR range test (Smith 2015) on torch-lr-finder, fed from device-resident data.

``run_lr_find(recipe)`` builds the recipe's model, optimizer and loss and hands them to
torch-lr-finder's ``LRFinder``, whose ``range_test`` raises the learning rate of every
parameter group from ``start_lr`` to ``end_lr`` over ``num_iter`` steps (exponentially
or linearly), one optimizer step each. Only its documented API is used:

- the data: a ``TrainDataLoaderIter`` (its documented place for custom batches) over the
  engine's batches (uint8 images on the training device, augmented in batches by
  :mod:`cifarctl.augment`); ``range_test`` only calls ``iter()`` on it, one shuffled pass
  each time a pass ends;
- the per-step hook: the criterion, wrapped (:class:`_WatchedLoss`). Each call sees the
  optimizer's current lr and the raw loss, reports ``progress(i, n, lr, loss)``, and on
  divergence (our rule, :class:`DivergenceWatch`: ``diverge_th`` never fires on a NaN)
  raises before ``backward``, so the diverged step is never applied. ``range_test`` runs
  with ``smooth_f=0, diverge_th=inf``; the lrs and raw losses are the wrapper's;
- precision: ``amp_backend="torch"`` with the recipe's autocast dtype and a GradScaler
  (enabled for fp16), none for fp32;
- its tqdm bar and prints go to a buffer (stdout and stderr redirected around
  ``range_test``; the progress callback runs with the real streams);
- ``reset()`` restores the model and optimizer; train/eval mode and the RNG state are
  restored here.

The sweep stops at divergence (the smoothed loss above 4x its best, or a non-finite
loss), and :mod:`cifarctl.training.lr_suggest` reads it: smoothing adapted to the
sweep's length, steepest / valley / minimum÷10 suggestions bounded before the divergence
and the lowest loss, and an *inconclusive* verdict (with a reason and what to try) when
the loss never falls meaningfully. ``recommended`` is the valley, else the steepest, else
minimum/10, with the reason; ``None`` for an inconclusive sweep.

Under ``scheduler.max_lr: auto`` (:func:`choose_max_lr`), an inconclusive or
out-of-range result is a one-line :class:`UsageError` (exit 2), unless the recipe states
``scheduler.lr_find.fallback_max_lr``: that is then used, with a warning.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarctl.data import load_cifar, resolve_source
from cifarctl.errors import UsageError
from cifarctl.fsutil import write_atomic
from cifarctl.recipe.schema import LRFind
from cifarctl.recipe.wording import lr_find_problems
from cifarctl.runs import create_run_dir
from cifarctl.training.batches import Batches
from cifarctl.training.builders import (
    autocast,
    build_loss,
    build_model,
    build_optimizer,
    precision_for,
    resolve_device,
    with_num_classes,
)
from cifarctl.training.lr_suggest import DIVERGE_K, LABELS, SUGGESTIONS, DivergenceWatch, advice_for, analyse_sweep

Progress = Callable[[int, int, float, float], None]


# ------------------------------------------------------------------------ result
@dataclass
class LRFindResult:
    """One range test: the sweep, the suggestions, the verdict and what to use."""

    lr: list[float]
    loss: list[float]             # raw loss of each step
    smoothed_loss: list[float]    # centred moving average (window adapted to the sweep); NaN from the divergence on
    suggestions: dict[str, float | None]
    recommended: float | None     # None when inconclusive
    recommended_by: str | None    # "valley", "steepest", "min_div_10" or None
    reason: str
    diverged: bool
    num_iter: int                 # iterations asked for; len(lr) may be fewer
    start_lr: float
    end_lr: float
    step_mode: str
    notes: list[str] = field(default_factory=list)  # unavailable suggestions, divergence
    settings: dict[str, Any] = field(default_factory=dict)  # model, optimizer, batch, ...
    seconds: float = 0.0
    conclusive: bool = True
    inconclusive_reason: str | None = None
    cause: str | None = None      # inconclusive: flat, noisy, start, early or short
    advice: list[str] = field(default_factory=list)  # what to try when inconclusive
    divergence_index: int | None = None
    minimum_index: int | None = None
    smoothing_window: int = 1
    drop: float | None = None     # relative fall of the smoothed loss
    significance: float | None = None  # that fall / the least fall that is not noise (< 1: noise)
    clipped: list[str] = field(default_factory=list)  # suggestions clipped into [start_lr, end_lr]
    fallback: str | None = None   # max_lr: auto fell back to fallback_max_lr: why

    @property
    def verdict(self) -> str:
        """"ok" or "inconclusive"."""
        return "ok" if self.conclusive else "inconclusive"

    @property
    def message(self) -> str:
        """The notes as one paragraph ('' when the sweep was unremarkable)."""
        return " ".join(self.notes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite losses become null)."""
        d = asdict(self)
        d["loss"] = [_finite_or_none(v) for v in self.loss]
        d["smoothed_loss"] = [_finite_or_none(v) for v in self.smoothed_loss]
        d["iterations_run"] = len(self.lr)
        d["verdict"] = self.verdict
        d["message"] = self.message
        return d


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def analyse(
    lrs: list[float], raw: list[float], *, num_iter: int, start_lr: float, end_lr: float,
    step_mode: str = "exp", prefer: str = "valley",
) -> LRFindResult:
    """Build an :class:`LRFindResult` from a sweep's lrs and raw losses
    (:func:`cifarctl.training.lr_suggest.analyse_sweep` reads it)."""
    if prefer not in SUGGESTIONS:
        raise UsageError(f"unknown suggestion {prefer!r}: expected one of {', '.join(SUGGESTIONS)}")
    a = analyse_sweep(lrs, raw, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, prefer=prefer)
    notes = list(a.notes)
    n = len(lrs)
    if n and not math.isfinite(raw[0]):
        notes.insert(0, "The loss was not finite from the first step: lower start_lr.")
    return LRFindResult(
        lr=[float(v) for v in lrs], loss=[float(v) for v in raw], smoothed_loss=a.smoothed,
        suggestions=a.suggestions, recommended=a.recommended, recommended_by=a.recommended_by,
        reason=a.reason, diverged=a.divergence_index is not None, num_iter=num_iter,
        start_lr=float(start_lr), end_lr=float(end_lr), step_mode=step_mode, notes=notes,
        conclusive=a.conclusive, inconclusive_reason=a.inconclusive_reason, cause=a.cause, advice=a.advice,
        divergence_index=a.divergence_index, minimum_index=a.minimum_index, smoothing_window=a.window,
        drop=a.drop, significance=a.significance, clipped=list(a.clipped),
    )


# ---------------------------------------------------------------------- the sweep
class _Diverged(Exception):
    """Raised by :class:`_WatchedLoss` before ``backward``: the sweep has diverged."""

class _Passes:
    """What ``TrainDataLoaderIter`` iterates: each ``iter()`` is a new shuffled pass of the
    engine's batches (:class:`cifarctl.training.batches.Batches`, at least one full batch)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return self.batches.plan().iterate()


class _WatchedLoss:
    """The recipe's loss as ``LRFinder`` calls it, once per step: records the optimizer's
    lr and the raw loss, reports progress (with the streams ``range_test`` runs without)
    and raises :class:`_Diverged` when :class:`DivergenceWatch` says so. One host read a
    step: the divergence rule needs each loss before ``backward``."""

    def __init__(self, criterion, optimizer, num_iter: int, progress: Progress | None, streams):
        self.criterion, self.optimizer, self.num_iter = criterion, optimizer, num_iter
        self.progress, self.streams = progress, streams
        self.watch = DivergenceWatch(num_iter)
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def __call__(self, outputs, labels):
        loss = self.criterion(outputs, labels)
        lr, value = float(self.optimizer.param_groups[0]["lr"]), float(loss.detach())
        self.lrs.append(lr)
        self.losses.append(value)
        if self.progress is not None:
            with redirect_stdout(self.streams[0]), redirect_stderr(self.streams[1]):
                self.progress(len(self.lrs), self.num_iter, lr, value)
        if self.watch.update(value):
            raise _Diverged
        return loss


PROBE_IMAGES = 32  # images in the timed pass that estimates a sweep's duration up front


def seconds_per_step(model, criterion, shape: tuple[int, ...], batch_size: int, device, dtype,
                     channels_last: bool = False) -> float:
    """About how long one sweep step takes, measured before the sweep: a forward and backward
    pass on ``min(batch_size, PROBE_IMAGES)`` blank images of ``shape`` (C, H, W), timed on
    the second of two runs (the first warms up) and scaled to ``batch_size``. In eval mode,
    so no BatchNorm statistic moves and no dropout draw is taken; gradients are cleared."""
    n = max(1, min(batch_size, PROBE_IMAGES))
    x = torch.zeros((n, *shape), device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.zeros(n, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        for _ in range(2):
            t0 = time.perf_counter()
            with autocast(device, dtype):
                loss = criterion(model(x), y)
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            took = time.perf_counter() - t0
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return took * batch_size / n


def lr_find_recipe(recipe, optimizer: str | None, weight_decay: float | None, batch_size: int | None):
    """The recipe with lr-find's --optimizer ("sgd", "adam", "adamw"), --weight-decay and
    --batch-size applied (validated: they are the user's)."""
    changes: dict[str, Any] = {}
    if optimizer is not None and optimizer != recipe.optimizer.name:
        changes["optimizer"] = {"name": optimizer}  # that optimizer's defaults
    if weight_decay is not None:
        changes["optimizer.weight_decay"] = weight_decay
    if batch_size is not None:
        changes["data.batch_size"] = batch_size
    return recipe.replace(changes, "lr-find options") if changes else recipe


def sweep_settings(recipe, start_lr: float | None = None, end_lr: float | None = None,
                   num_iter: int | None = None, step_mode: str | None = None) -> dict[str, Any]:
    """The sweep's ``start_lr``, ``end_lr``, ``num_iter``, ``step_mode``: the ones given (on the
    command line), else the recipe's ``scheduler.lr_find``, else the defaults."""
    base = getattr(recipe.scheduler, "lr_find", None) or LRFind()
    settings = {
        "start_lr": base.start_lr if start_lr is None else start_lr,
        "end_lr": base.end_lr if end_lr is None else end_lr,
        "num_iter": base.num_iter if num_iter is None else num_iter,
        "step_mode": base.step_mode if step_mode is None else step_mode,
    }
    problems = lr_find_problems(settings)  # --end-lr inf: up front, not an OverflowError after the sweep
    if problems:
        raise UsageError("lr-find: " + "; ".join(problems))
    return settings


def run_lr_find(
    recipe,
    *,
    data_source: str | None = None,
    device: str | Any = "auto",
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    step_mode: str = "exp",
    progress: Progress | None = None,
    model=None,
    data=None,
    prefer: str = "valley",
    on_start: Callable[[int, float], None] | None = None,
) -> LRFindResult:
    """Run the LR range test for ``recipe`` and return the sweep with its suggestions.

    ``model`` (an ``nn.Module``) runs the test on that model instead of a
    fresh one from the recipe; it is restored afterwards either way. ``data`` (a
    ``CifarArrays``) skips loading ``data_source`` / the recipe's source.
    ``progress(i, n, lr, loss)`` is called after every step; ``on_start(num_iter,
    seconds_per_step)``, when given, once before the first, with an estimate from a timed
    pass (:func:`seconds_per_step`).
    """
    if not (start_lr > 0 and end_lr > start_lr):
        raise UsageError(f"need 0 < start_lr < end_lr (got {start_lr:g} and {end_lr:g})")
    if num_iter < 2:
        raise UsageError(f"num_iter must be >= 2 (got {num_iter})")
    if step_mode not in ("exp", "linear"):
        raise UsageError(f"step_mode must be 'exp' or 'linear' (got {step_mode!r})")
    dev = device if isinstance(device, torch.device) else resolve_device(device)

    if data is None:

        data = load_cifar(resolve_source(data_source or recipe.data.source), progress=False,
                          train_subset=recipe.data.train_subset, test_subset=recipe.data.test_subset,
                          seed=recipe.seed, image_size=recipe.data.image_size,
                          label_kind=recipe.data.label_kind)
        recipe = with_num_classes(recipe, len(data.classes), str(data_source or recipe.data.source))
    gen = torch.Generator(device=dev).manual_seed(recipe.seed)
    batches = Batches(recipe, data, dev, gen)

    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if dev.type == "cuda" else None
    if model is None:
        torch.manual_seed(recipe.seed)
        model = build_model(recipe).to(dev)
        if batches.channels_last:
            model = model.to(memory_format=torch.channels_last)
    was_training = model.training
    opt = build_optimizer(model, recipe)
    criterion = build_loss(recipe)

    from torch_lr_finder import LRFinder, TrainDataLoaderIter

    dtype, _ = precision_for(recipe.precision, dev)
    amp = {} if dtype is None else {
        "amp_backend": "torch", "amp_config": {"device_type": dev.type, "dtype": dtype},
        "grad_scaler": torch.amp.GradScaler(dev.type, enabled=dtype is torch.float16)}
    if on_start is not None:
        _, h, w, c = data.train_x.shape  # NHWC
        on_start(num_iter, seconds_per_step(model, criterion, (c, h, w), recipe.data.batch_size, dev, dtype,
                                            batches.channels_last))
    watched = _WatchedLoss(criterion, opt, num_iter, progress, (sys.stdout, sys.stderr))
    finder = LRFinder(model, opt, watched, device=dev, **amp)  # keeps the model's and optimizer's state
    t0 = time.perf_counter()
    try:
        with redirect_stdout(io.StringIO()) as buffer, redirect_stderr(buffer):
            finder.range_test(TrainDataLoaderIter(_Passes(batches)), start_lr=start_lr, end_lr=end_lr,
                              num_iter=num_iter, step_mode=step_mode, smooth_f=0, diverge_th=math.inf)
    except _Diverged:
        pass
    finally:
        finder.reset()
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    lrs, losses = watched.lrs, watched.losses
    seconds = time.perf_counter() - t0

    result = analyse(lrs, losses, num_iter=num_iter, start_lr=start_lr,
                     end_lr=end_lr, step_mode=step_mode, prefer=prefer)
    result.seconds = seconds
    result.settings = {
        "recipe": recipe.name, "model": recipe.model, "optimizer": recipe.optimizer.name,
        "weight_decay": recipe.optimizer.weight_decay, "batch_size": recipe.data.batch_size,
        "loss": recipe.loss.name, "data": data.source, "train_images": int(batches.n),
        "device": str(dev), "smoothing_window": result.smoothing_window, "diverge_k": DIVERGE_K,
    }
    return result


def choose_max_lr(recipe, *, model=None, data=None, data_source: str | None = None, device: str | Any = "auto",
                   progress: Progress | None = None) -> tuple[float, LRFindResult | None]:
    """The OneCycle peak lr of ``recipe``: ``(max_lr, None)`` when it is a number; for
    ``scheduler.max_lr: auto``, ``(lr, result)`` from a range test run with the recipe's
    ``scheduler.lr_find`` settings (on ``model``, restored afterwards, if given).

    An inconclusive sweep, or a recommended lr outside the sweep (clipped) or outside
    ``scheduler.lr_find.accept_range``, raises a one-line :class:`UsageError` (exit 2),
    unless ``scheduler.lr_find.fallback_max_lr`` is set: that value is returned and
    ``result.fallback`` says why (:func:`max_lr_notice` words the warning).
    """
    sched = recipe.scheduler
    if getattr(sched, "name", None) != "onecycle":
        raise UsageError(f"recipe {recipe.name}: max_lr needs a onecycle scheduler (got {sched.name})")
    if sched.max_lr != "auto":
        return float(sched.max_lr), None
    s = sched.lr_find
    result = run_lr_find(recipe, model=model, data=data, data_source=data_source, device=device,
                         start_lr=s.start_lr, end_lr=s.end_lr, num_iter=s.num_iter, step_mode=s.step_mode,
                         progress=progress)
    problem = auto_max_lr_problem(result, getattr(s, "accept_range", None))
    if problem is None:
        return float(result.recommended), result
    fallback = getattr(s, "fallback_max_lr", None)
    if fallback is not None:
        result.fallback = problem
        return float(fallback), result
    tips = advice_for(result.cause, num_iter=s.num_iter, start_lr=s.start_lr, end_lr=s.end_lr,
                      recipe=True) if result.cause else []
    advice = f"; try {', '.join(tips)}" if tips else ""
    raise UsageError(f"{recipe.origin}: scheduler.max_lr: auto: the LR range test {problem}{advice}; "
                     "or set scheduler.max_lr to a number, or scheduler.lr_find.fallback_max_lr")


def auto_max_lr_problem(result: LRFindResult, accept_range=None) -> str | None:
    """Why ``result`` must not set max_lr (a phrase after "the LR range test"), or None."""
    if not result.conclusive or result.recommended is None:
        why = result.inconclusive_reason or result.reason
        return f"was inconclusive ({why})"
    lr, by = result.recommended, LABELS.get(result.recommended_by or "", "its suggestion")
    if result.recommended_by in result.clipped:
        return (f"chose {lr:.2e} ({by}) only by clipping it to the sweep range "
                f"[{result.start_lr:.0e}, {result.end_lr:g}]: out of range")
    if accept_range is not None and not accept_range[0] <= lr <= accept_range[1]:
        return (f"chose {lr:.2e} ({by}), outside scheduler.lr_find.accept_range "
                f"[{accept_range[0]:g}, {accept_range[1]:g}]")
    return None


def max_lr_notice(result: LRFindResult, max_lr: float) -> str:
    """The line ``train`` shows about the max_lr that ``max_lr: auto`` resolved to."""
    what = (f"the LR range test ({result.settings.get('train_images', '?')} images, {len(result.lr)} "
            f"steps, {result.seconds:.1f}s)")
    fallback = getattr(result, "fallback", None)
    if fallback:
        return (f"warning: max_lr auto: {what} {fallback}: training with scheduler.lr_find.fallback_max_lr "
                f"{max_lr:.3g} instead; it is saved in recipe.yaml")
    return f"max_lr auto: {what} chose {max_lr:.3g} ({result.recommended_by}); it is saved in recipe.yaml"


# ------------------------------------------------------------------------ output
def make_out_dir(runs_dir: str | os.PathLike, name: str, now: datetime | None = None) -> Path:
    """A new ``<runs_dir>/lr-find/<name>-<YYYYmmdd-HHMMSS>`` folder (``-2``, ``-3``... if taken)."""
    return create_run_dir(Path(runs_dir) / "lr-find", name, now=now, checkpoints=False)


def write_lr_find(result: LRFindResult, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``lr_find.json`` and ``lr_find.png`` into ``out_dir`` (atomically; a file that
    cannot be written is one line naming it); return their paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure


    out = Path(out_dir)
    json_path, png_path = out / "lr_find.json", out / "lr_find.png"
    write_atomic(json_path, json.dumps(result.to_dict(), indent=2) + "\n")

    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lrs = np.asarray(result.lr, dtype=float)
    ax.plot(lrs, result.loss, color="0.75", lw=1, label="loss")
    ax.plot(lrs, result.smoothed_loss, color="tab:blue", lw=2, label="smoothed loss")
    colors = {"steepest": "tab:red", "valley": "tab:green", "min_div_10": "tab:orange"}
    for k in SUGGESTIONS:
        v = result.suggestions.get(k)
        if v is not None:
            star = " (recommended)" if k == result.recommended_by else ""
            ax.axvline(v, color=colors[k], ls="-" if star else "--", lw=2 if star else 1,
                       label=f"{LABELS[k]} {v:.2e}{star}")
    finite = [v for v in result.loss + result.smoothed_loss if math.isfinite(v)]
    if finite:  # keep a diverged tail from flattening the interesting part
        first = next((v for v in result.smoothed_loss if math.isfinite(v)), finite[0])
        lo, hi = min(finite), max(finite)
        if first > 0:
            hi = min(hi, 2 * first)
        pad = 0.05 * (hi - lo or 1)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    title = f"LR range test: {result.settings.get('model', '')}"
    flags = [w for w, on in (("diverged", result.diverged), ("inconclusive", not result.conclusive)) if on]
    ax.set_title(title + (f" ({', '.join(flags)})" if flags else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(png_path, buf.getbuffer())
    return json_path, png_path
