"""The LR range test: torch-lr-finder's sweep, fed from device-resident data.

``run_lr_find(recipe)`` builds the recipe's model, optimizer and loss, streams batches
of uint8 images that live on the training device through the batched augmentation of
:mod:`cifarctl.augment`, and lets ``torch_lr_finder.LRFinder.range_test`` raise the
learning rate from ``start_lr`` to ``end_lr``. torch-lr-finder's own tqdm bar and prints
are silenced; progress goes to a ``progress(i, n, lr, loss)`` callback. The model and
optimizer are restored afterwards (``LRFinder.reset()``), and so is the RNG state.

Three suggestions are computed from the smoothed loss (torch-lr-finder's history):

* ``steepest``: torch-lr-finder's rule, argmin of ``np.gradient`` of the smoothed loss
  with the first 10 and last 5 points skipped (needs >= 17 points);
* ``valley``: fastai's rule, 1/3 + 1/6 of the way down the longest decreasing run of the
  smoothed loss, over points ``[num_iter // 10 : -5]``;
* ``min_div_10``: the lr at the lowest smoothed loss, divided by 10 (fastai's "minimum").

``recommended`` is the valley, else the steepest, else minimum/10, with the reason.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from cifarctl.errors import CifarctlError, UsageError

Progress = Callable[[int, int, float, float], None]

SUGGESTIONS = ("steepest", "valley", "min_div_10")
LABELS = {"steepest": "steepest gradient", "valley": "valley", "min_div_10": "minimum / 10"}
REASONS = {
    "valley": "valley: the longest steep descent of the smoothed loss, robust to noise",
    "steepest": "steepest: where the smoothed loss falls fastest (noisier than the valley)",
    "min_div_10": "minimum/10: a tenth of the lr at the lowest loss, a conservative choice",
}
PREFERENCE = ("valley", "steepest", "min_div_10")
# torch-lr-finder's plot(): skip_start=10, skip_end=5, and it needs skip_start + skip_end + 2.
STEEP_SKIP_START, STEEP_SKIP_END = 10, 5
STEEP_MIN_POINTS = STEEP_SKIP_START + STEEP_SKIP_END + 2
SMOOTH_F = 0.05   # torch-lr-finder's default exponential smoothing of the loss
DIVERGE_TH = 5.0  # stop when the smoothed loss exceeds 5x the best one


# ------------------------------------------------------------------------ result
@dataclass
class LRFindResult:
    """One range test: the sweep, the suggestions and what to use."""

    lr: list[float]
    loss: list[float]             # raw loss of each step
    smoothed_loss: list[float]    # torch-lr-finder's exponentially smoothed loss
    suggestions: dict[str, float | None]
    recommended: float | None
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
        d["message"] = self.message
        return d


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


# ------------------------------------------------------------------- suggestions
def valley_index(losses: list[float] | np.ndarray) -> int:
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


def suggest(
    lrs: list[float], smoothed: list[float], num_iter: int, start_lr: float, end_lr: float,
    diverged: bool = False,
) -> tuple[dict[str, float | None], list[str]]:
    """The three suggestions from a sweep, and a note for each one that is unavailable.

    Points from the first non-finite loss on are dropped (as fastai does). Every
    suggestion is clipped into ``[start_lr, end_lr]``.
    """
    lrs_a = np.asarray(lrs, dtype=float)
    loss_a = np.asarray(smoothed, dtype=float)
    bad = np.flatnonzero(~np.isfinite(loss_a))
    if bad.size:
        lrs_a, loss_a = lrs_a[: bad[0]], loss_a[: bad[0]]
    n = len(loss_a)
    out: dict[str, float | None] = dict.fromkeys(SUGGESTIONS)
    notes: list[str] = []

    if n >= STEEP_MIN_POINTS:
        window = slice(STEEP_SKIP_START, n - STEEP_SKIP_END)
        i = int(np.gradient(loss_a[window]).argmin())
        out["steepest"] = float(lrs_a[window][i])
    else:
        notes.append(f"steepest gradient unavailable: it needs >= {STEEP_MIN_POINTS} points, got {n}.")

    # fastai's window (skip the first tenth and the last 5 points); on a sweep too short
    # for it, every point (but a diverged last one).
    lo, hi = num_iter // 10, n - 5
    if hi - lo >= 5:
        w_lrs, w_loss = lrs_a[lo:hi], loss_a[lo:hi]
    else:
        keep = n - 1 if diverged and n > 3 else n
        w_lrs, w_loss = lrs_a[:keep], loss_a[:keep]
        if n >= 3:
            fix = ("lower start_lr or end_lr" if diverged and n < num_iter
                   else "use >= 17 steps (100 is the default)")
            notes.append(f"short sweep ({n} points): valley and minimum/10 use all of it and are rough; {fix}.")
    if len(w_loss) >= 3:
        out["valley"] = float(w_lrs[valley_index(w_loss)])
        out["min_div_10"] = float(w_lrs[int(w_loss.argmin())]) / 10
    else:
        notes.append(f"valley and minimum/10 unavailable: they need >= 3 finite points, got {n}.")

    lo_lr, hi_lr = min(start_lr, end_lr), max(start_lr, end_lr)
    for k, v in out.items():
        if v is None:
            continue
        if not math.isfinite(v):
            out[k] = None
            notes.append(f"{LABELS[k]} unavailable: not finite.")
        elif not lo_lr <= v <= hi_lr:
            out[k] = min(max(v, lo_lr), hi_lr)
            notes.append(f"{LABELS[k]} {v:.2e} clipped to the sweep range ({out[k]:.2e}).")
    return out, notes


def recommend(suggestions: dict[str, float | None], prefer: str = "valley") -> tuple[float | None, str | None, str]:
    """(lr, which, reason): ``prefer`` when available, else the next in PREFERENCE."""
    if prefer not in SUGGESTIONS:
        raise UsageError(f"unknown suggestion {prefer!r}: expected one of {', '.join(SUGGESTIONS)}")
    order = (prefer,) + tuple(k for k in PREFERENCE if k != prefer)
    for k in order:
        if suggestions.get(k) is not None:
            reason = REASONS[k] if k == prefer else f"{REASONS[k]} ({LABELS[prefer]} unavailable)"
            return suggestions[k], k, reason
    return None, None, "no suggestion: the sweep has too few finite points"


def analyse(
    lrs: list[float], raw: list[float], smoothed: list[float], *, num_iter: int, start_lr: float,
    end_lr: float, step_mode: str = "exp", diverged: bool = False, prefer: str = "valley",
) -> LRFindResult:
    """Build an :class:`LRFindResult` (suggestions, recommendation, notes) from a sweep."""
    suggestions, notes = suggest(lrs, smoothed, num_iter, start_lr, end_lr, diverged)
    if diverged and lrs:
        notes.insert(0, f"The loss diverged near lr {lrs[-1]:.2e}: stopped after {len(lrs)} of "
                        f"{num_iter} steps; the suggestions use the points before it.")
    elif diverged:
        notes.insert(0, "The loss was not finite from the first step: lower start_lr.")
    rec, which, reason = recommend(suggestions, prefer)
    return LRFindResult(
        lr=[float(v) for v in lrs], loss=[float(v) for v in raw], smoothed_loss=[float(v) for v in smoothed],
        suggestions=suggestions, recommended=rec, recommended_by=which, reason=reason, diverged=diverged,
        num_iter=num_iter, start_lr=float(start_lr), end_lr=float(end_lr), step_mode=step_mode, notes=notes,
    )


# ---------------------------------------------------------------------- the sweep
class _NonFinite(Exception):
    """A step's loss was NaN or inf: stop the sweep (torch-lr-finder would not)."""


class _Passes:
    """Each ``iter()`` is one shuffled pass of the engine's batches (:class:`cifarctl.feed.Batches`):
    uint8 images on the device, augmented in batches; torch-lr-finder's
    ``TrainDataLoaderIter`` starts a new pass when one ends."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self) -> int:
        return self.batches.steps_per_epoch

    def __iter__(self):
        return self.batches.plan().iterate()


def _finder_class():
    from torch_lr_finder import LRFinder

    class _Finder(LRFinder):
        """Records the raw loss of each step and reports progress."""

        raw: list[float]
        progress: Progress | None = None
        total: int = 0

        def _train_batch(self, train_iter, accumulation_steps, non_blocking_transfer=True):
            lr = self.optimizer.param_groups[0]["lr"]
            loss = super()._train_batch(train_iter, accumulation_steps, non_blocking_transfer)
            self.raw.append(loss)
            if self.progress is not None:
                self.progress(len(self.raw), self.total, lr, loss)
            if not math.isfinite(loss):
                raise _NonFinite
            return loss

    return _Finder


def _override(recipe, optimizer: str | None, weight_decay: float | None, batch_size: int | None):
    """The recipe with --optimizer / --weight-decay / --batch-size applied (re-validated)."""
    if optimizer is None and weight_decay is None and batch_size is None:
        return recipe
    from cifarctl.recipe import validate_dict

    raw = recipe.to_dict()
    if optimizer is not None and optimizer != raw["optimizer"]["name"]:
        raw["optimizer"] = {"name": optimizer}
    if weight_decay is not None:
        raw["optimizer"]["weight_decay"] = weight_decay
    if batch_size is not None:
        raw["data"]["batch_size"] = batch_size
    return validate_dict(raw, f"recipe {recipe.name} (lr-find options)")


def run_lr_find(
    recipe,
    *,
    data_source: str | None = None,
    device: str | Any = "auto",
    optimizer: str | None = None,
    weight_decay: float | None = None,
    batch_size: int | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    step_mode: str = "exp",
    progress: Progress | None = None,
    model=None,
    data=None,
    prefer: str = "valley",
) -> LRFindResult:
    """Run the LR range test for ``recipe`` and return the sweep with its suggestions.

    ``optimizer`` ("sgd", "adam", "adamw"), ``weight_decay`` and ``batch_size`` override
    the recipe's. ``model`` (an ``nn.Module``) runs the test on that model instead of a
    fresh one from the recipe; it is restored afterwards either way. ``data`` (a
    ``CifarArrays``) skips loading ``data_source`` / the recipe's source.
    ``progress(i, n, lr, loss)`` is called after every step.
    """
    import torch

    from cifarctl import engine
    from cifarctl.feed import Batches

    if not (start_lr > 0 and end_lr > start_lr):
        raise UsageError(f"need 0 < start_lr < end_lr (got {start_lr:g} and {end_lr:g})")
    if num_iter < 2:
        raise UsageError(f"num_iter must be >= 2 (got {num_iter})")
    if step_mode not in ("exp", "linear"):
        raise UsageError(f"step_mode must be 'exp' or 'linear' (got {step_mode!r})")
    recipe = _override(recipe, optimizer, weight_decay, batch_size)
    dev = device if isinstance(device, torch.device) else engine.resolve_device(device)

    if data is None:
        from cifarctl.data import load_cifar, resolve_source

        data = load_cifar(resolve_source(data_source or recipe.data.source), progress=False,
                          train_subset=recipe.data.train_subset, test_subset=recipe.data.test_subset,
                          seed=recipe.seed)
    gen = torch.Generator(device=dev).manual_seed(recipe.seed)
    batches = Batches(recipe, data, dev, gen)

    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if dev.type == "cuda" else None
    if model is None:
        torch.manual_seed(recipe.seed)
        model = engine.build_model(recipe).to(dev)
        if batches.channels_last:
            model = model.to(memory_format=torch.channels_last)
    was_training = model.training
    opt = engine.build_optimizer(model, recipe)
    criterion = engine.build_loss(recipe)

    import torch_lr_finder.lr_finder as tlf
    from torch_lr_finder import TrainDataLoaderIter

    finder = _finder_class()(model, opt, criterion, device=dev, **engine.amp_kwargs(recipe, dev))
    finder.raw, finder.progress, finder.total = [], progress, num_iter
    loader = TrainDataLoaderIter(_Passes(batches))
    saved = tlf.tqdm, getattr(tlf, "print", None)
    tlf.tqdm = lambda it, *a, **k: it       # its own bar: we report through `progress`
    tlf.print = lambda *a, **k: None         # "See the graph with {finder_name}.plot()"
    diverged = False
    t0 = time.perf_counter()
    try:
        finder.range_test(loader, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter,
                          step_mode=step_mode, smooth_f=SMOOTH_F, diverge_th=DIVERGE_TH)
    except _NonFinite:
        diverged = True
    finally:
        tlf.tqdm = saved[0]
        if saved[1] is None:
            del tlf.print
        else:
            tlf.print = saved[1]
        finder.reset()
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    seconds = time.perf_counter() - t0

    lrs = list(finder.history["lr"])
    smoothed = list(finder.history["loss"])
    raw = finder.raw[: len(lrs)]
    diverged = diverged or len(lrs) < num_iter
    result = analyse(lrs, raw, smoothed, num_iter=num_iter, start_lr=start_lr, end_lr=end_lr,
                     step_mode=step_mode, diverged=diverged, prefer=prefer)
    result.seconds = seconds
    result.settings = {
        "recipe": recipe.name, "model": recipe.model, "optimizer": recipe.optimizer.name,
        "weight_decay": recipe.optimizer.weight_decay, "batch_size": recipe.data.batch_size,
        "loss": recipe.loss.name, "data": data.source, "train_images": int(batches.n),
        "device": str(dev), "smooth_f": SMOOTH_F, "diverge_th": DIVERGE_TH,
    }
    return result


def resolve_max_lr(recipe, *, model=None, data=None, data_source: str | None = None, device: str | Any = "auto",
                   progress: Progress | None = None) -> tuple[float, LRFindResult | None]:
    """The OneCycle peak lr of ``recipe``: ``(max_lr, None)`` when it is a number; for
    ``scheduler.max_lr: auto``, ``(recommended, result)`` from a range test run with the
    recipe's ``scheduler.lr_find`` settings (on ``model``, restored afterwards, if given).

    Raises :class:`CifarctlError` when the test gives no suggestion.
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
    if result.recommended is None:
        raise CifarctlError(f"max_lr: auto: the LR range test gave no suggestion ({result.message}); "
                            "set scheduler.max_lr to a number or change scheduler.lr_find")
    return result.recommended, result


# ------------------------------------------------------------------------ output
def make_out_dir(runs_dir: str | os.PathLike, name: str, now: datetime | None = None) -> Path:
    """A new ``<runs_dir>/lr-find/<name>-<YYYYmmdd-HHMMSS>`` folder (``-2``, ``-3``... if taken)."""
    from cifarctl.runs import path_error

    parent = Path(runs_dir) / "lr-find"
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # read-only, a file in the way, too long: one line naming it
        raise path_error("the lr-find folder", parent, exc) from None
    base = f"{name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 1000):
        path = parent / (base if i == 1 else f"{base}-{i}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise path_error("the lr-find folder", path, exc) from None
    raise CifarctlError(f"cannot create a new folder under {parent}: {base}-2 .. -999 all exist")


def write_lr_find(result: LRFindResult, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``lr_find.json`` and ``lr_find.png`` into ``out_dir``; return their paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    json_path, png_path = out / "lr_find.json", out / "lr_find.png"
    json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")

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
    ax.set_title(title + (" (diverged)" if result.diverged else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    return json_path, png_path
