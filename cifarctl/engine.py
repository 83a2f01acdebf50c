"""The training engine: device-resident data, one step loop, plain dict events out.

``prepare(recipe, ...)`` builds a :class:`Trainer` (data on the device, model, optimizer,
scheduler, loss, precision); ``train_epochs(trainer)`` is a generator of events:

- ``{"type": "start", ...}`` once, then ``{"type": "info", "message"}`` notices;
- ``{"type": "step", "epoch", "step", "steps", "loss", "acc", "lr", "images_per_s"}`` at
  display points (every step on CPU, every ``display_every`` steps on CUDA), running
  epoch averages as floats;
- ``{"type": "epoch", "epoch", "epochs", "train_loss", "train_acc", "test_loss",
  "test_acc", "lr", "seconds", "train_seconds", "images_per_s", "best"}`` after each
  epoch's test evaluation (``seconds`` includes it, ``train_seconds`` does not; ``lr`` is
  the last step's; ``images_per_s`` is training throughput);
- ``{"type": "stopped", "signal", "epoch", "step"}`` when ``trainer.stop_requested`` was set
  (by a signal handler): the generator returns after the current step.

Nothing here prints or writes files; checkpoints are ``state_dict``/``load_state_dict``
(the files are :mod:`cifarctl.runs`). Accuracies are in percent. Steps are 1-based.

Data-parallel under torchrun (``world_size`` > 1, see :mod:`cifarctl.distributed`): each
rank trains on its slice of every global batch (``feed._shard``) through DDP, metrics go
through ``_reduce`` (a sum over ranks), the test split is evaluated in shares
(``_test_metrics``), and the ranks agree on stops and losses at the same steps. With one
process all of this is the identity and the arithmetic is unchanged.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cifarctl import __version__, distributed
from cifarctl.builders import (  # noqa: F401  (build_*, amp_kwargs: public here for lr-find)
    amp_kwargs,
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
    precision_for,
    resolve_device,
    resolve_max_lr,
    seed_everything,
)
from cifarctl.errors import EXIT_BAD_LOSS, EXIT_DIVERGED, CifarctlError, RecipeError, UsageError
from cifarctl.feed import Batches, count_steps  # noqa: F401  (count_steps: public here)
from cifarctl.lookahead import build_lookahead
from cifarctl.model_hooks import init_from_data, start_epoch
from cifarctl.recipe import Recipe
from cifarctl.runs import capture_rng, restore_rng
from cifarctl.schedules import LinearWarmupDecay
from cifarctl.tta import tta_forward

__all__ = [
    "DivergedError", "NegativeLossError", "Trainer", "count_steps", "evaluate", "load_state_dict",
    "prepare", "resolve_device", "resolve_max_lr", "state_dict", "train_epochs",
]

# Test hooks (see tests/test_resume.py): deterministic stand-ins for a signal or a NaN,
# and a real SIGKILL sent to ourselves just before a given step (tests/test_reliability.py).
ENV_STOP_AT = "CIFARCTL_TEST_STOP_AT_STEP"
ENV_NAN_AT = "CIFARCTL_TEST_NAN_AT_STEP"
ENV_KILL_AT = "CIFARCTL_TEST_KILL_AT_STEP"


# ------------------------------------------------------------------------ guards
class DivergedError(CifarctlError):
    """A NaN/inf loss (exit code 3)."""

    exit_code = EXIT_DIVERGED

    def __init__(self, step: int, loss: float):
        self.step, self.loss = step, loss
        super().__init__(
            f"diverged at step {step} (loss={loss}): lower the learning rate (optimizer.lr or "
            "scheduler.max_lr), add warm-up, or train in fp32 (precision: fp32)")


class NegativeLossError(CifarctlError):
    """A negative loss: the loss does not fit the model's outputs (exit code 4)."""

    exit_code = EXIT_BAD_LOSS

    def __init__(self, step: int, loss: float, loss_name: str):
        self.step, self.loss = step, loss
        if loss_name == "nll":
            why = ("'nll' expects log-probabilities but the model outputs logits; "
                   "use loss: {name: cross_entropy}")
        else:
            why = f"{loss_name!r} cannot be negative on valid outputs; check the model's last layer"
        super().__init__(f"loss is negative ({loss:.2f}) at step {step}: {why}")


class LossWatch:
    """Stops within one step on a NaN/inf or negative loss.

    CPU: ``loss.item()`` every step (no device to wait for) and the error is raised before
    the backward pass, so the weights stay those of the last good step. CUDA: the loss is
    copied without blocking into pinned memory and read one step later (step k is judged
    while step k+1 runs), and at display points/epoch end (``flush``).
    """

    NEGATIVE = -1e-4  # rounding can give -1e-7 for a valid cross-entropy

    def __init__(self, device: torch.device, loss_name: str):
        self.loss_name = loss_name
        self.sync = device.type != "cuda"
        self.pending: int | None = None
        if not self.sync:
            self.buf = torch.empty((), dtype=torch.float32, pin_memory=True)
            self.event = torch.cuda.Event()

    def _judge(self, value: float, step: int) -> None:
        if not math.isfinite(value):
            raise DivergedError(step, value)
        if value < self.NEGATIVE:
            raise NegativeLossError(step, value, self.loss_name)

    def check(self, loss: torch.Tensor, step: int) -> None:
        if self.sync:
            self._judge(float(loss.item()), step)
            return
        self.flush()
        self.buf.copy_(loss.detach().float(), non_blocking=True)
        self.event.record()
        self.pending = step

    def flush(self) -> None:
        if self.pending is not None:
            self.event.synchronize()
            step, self.pending = self.pending, None
            self._judge(float(self.buf.item()), step)


@dataclass
class Trainer:
    """Everything one training run holds; ``train_epochs`` advances it."""

    recipe: Recipe
    device: torch.device
    model: nn.Module            # what is called (maybe torch.compile'd)
    raw_model: nn.Module        # what is saved
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    loss_fn: Callable
    batches: Batches
    normalize: Callable         # uint8 NCHW on device -> float32 normalized
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    data_source: str
    generator: torch.Generator  # permutation + augmentation randomness
    params: int
    steps_per_epoch: int
    rank: int = 0
    world_size: int = 1
    display_every: int = 1
    epoch: int = 0              # completed epochs
    step: int = 0               # completed optimizer steps, all epochs
    progress: dict | None = None  # mid-epoch state (set by a stop; restored on resume)
    best_acc: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    stop_requested: str | None = None  # "SIGINT"/"SIGTERM": stop after the current step
    stop_at: int | None = None
    nan_at: int | None = None
    kill_at: int | None = None
    lr_find: Any = None         # the LRFindResult when max_lr was "auto"
    lookahead: Any = None       # cifarctl.lookahead.Lookahead when the recipe has one

    @property
    def sched_per_batch(self) -> bool:
        return isinstance(self.scheduler, (torch.optim.lr_scheduler.OneCycleLR, LinearWarmupDecay))

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda" and self.recipe.channels_last

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


# ------------------------------------------------------------------------ prepare
def prepare(
    recipe: Recipe,
    *,
    data_source: str | None = None,
    device: str | torch.device = "auto",
    seed: int | None = None,
    cache_dir=None,
    progress: bool = False,
    rank: int = 0,
    world_size: int = 1,
    lr_find_progress: Callable | None = None,
) -> Trainer:
    """Seed, load the data onto the device, build model/optimizer/scheduler/loss/precision.

    ``data_source`` overrides ``recipe.data.source`` (else ``$CIFARCTL_DATA``, else
    cifar10); ``seed`` overrides ``recipe.seed``. ``max_lr: auto`` runs the LR range test
    on the loaded data first (``lr_find_progress(i, n, lr, loss)`` after each of its steps):
    ``trainer.recipe`` then holds the chosen number and ``trainer.lr_find`` the sweep.
    """
    from cifarctl.data import load_cifar, resolve_source

    dev = device if isinstance(device, torch.device) else resolve_device(device)
    seed = recipe.seed if seed is None else seed
    seed_everything(seed)
    notices: list[str] = []
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    source = resolve_source(data_source or recipe.data.source)
    d = recipe.data
    with distributed.main_first(world_size):  # rank 0 decodes and caches, the others read the cache
        arrays = load_cifar(source, cache_dir=cache_dir, progress=progress,
                            train_subset=d.train_subset, test_subset=d.test_subset, seed=seed)
    if d.batch_size > len(arrays.train_y):  # would silently train on smaller batches
        raise RecipeError(recipe.origin, [f"data.batch_size: {d.batch_size} is larger than the "
                                          f"{len(arrays.train_y)} train images of {source}"])
    recipe, lr_find = _resolve_auto_max_lr(recipe, arrays, dev, lr_find_progress, notices)
    if world_size > 1 and lr_find is not None:  # every rank ran the range test: rank 0's choice
        recipe = distributed.broadcast_object(recipe)

    model = build_model(recipe).to(dev)
    if dev.type == "cuda" and recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    raw_model = model

    generator = torch.Generator(device=dev)
    generator.manual_seed(seed)
    batches = Batches(recipe, arrays, dev, generator, rank, world_size, notices)
    init_from_data(raw_model, arrays.train_x if batches.x is None else batches.x,
                   batches.normalize.normalize_only, dev)  # model.data_init; a resume then loads over it
    if world_size > 1:  # DDP starts every rank from rank 0's weights; raw_model is what is saved
        model, raw_model = distributed.wrap_model(raw_model, dev, recipe.sync_bn, batches.batch_size, notices)
    if recipe.compile:
        model = torch.compile(model)

    amp_dtype, note = precision_for(recipe.precision, dev)
    if note:
        notices.append(note)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    optimizer = build_optimizer(model, recipe)
    steps = batches.steps_per_epoch
    scheduler = build_scheduler(recipe, optimizer, steps, resolve_max_lr(recipe))
    lookahead = build_lookahead(recipe, raw_model, recipe.epochs * steps)

    loss_fn = build_loss(recipe)

    max_params = recipe.target.max_params
    if max_params is not None and params > max_params:
        notices.append(f"warning: {recipe.model} has {params:,} params, over target.max_params "
                       f"{max_params:,}")

    def _env_int(name: str) -> int | None:
        value = os.environ.get(name)
        return int(value) if value and value.strip().lstrip("-").isdigit() else None

    to_dev = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
    test_x = to_dev(np.ascontiguousarray(arrays.test_x.transpose(0, 3, 1, 2)))
    return Trainer(
        recipe=recipe, device=dev, model=model, raw_model=raw_model, optimizer=optimizer,
        scheduler=scheduler, scaler=scaler, amp_dtype=amp_dtype, loss_fn=loss_fn,
        batches=batches, normalize=batches.normalize.normalize_only, test_x=test_x, test_y=to_dev(arrays.test_y),
        classes=list(arrays.classes), data_source=source, generator=generator, params=params,
        steps_per_epoch=steps, rank=rank, world_size=world_size,
        display_every=1 if dev.type == "cpu" else 10, notices=notices,
        stop_at=_env_int(ENV_STOP_AT), nan_at=_env_int(ENV_NAN_AT), kill_at=_env_int(ENV_KILL_AT),
        lr_find=lr_find, lookahead=lookahead,
    )


def _resolve_auto_max_lr(recipe: Recipe, arrays, dev: torch.device, progress, notices: list[str]):
    """(recipe with a numeric max_lr, LRFindResult or None): runs the range test for ``auto``.

    The test builds its own model and restores every RNG it touches, so training then
    starts exactly as if the chosen number had been written in the recipe.
    """
    from cifarctl.builders import is_max_lr_auto

    if not is_max_lr_auto(recipe):
        return recipe, None
    from cifarctl.lrfind import max_lr_notice, resolve_max_lr as range_test
    from cifarctl.recipe import validate_dict

    max_lr, result = range_test(recipe, data=arrays, device=dev, progress=progress)
    raw = recipe.to_dict()
    raw["scheduler"]["max_lr"] = float(max_lr)
    resolved = validate_dict(raw, f"recipe {recipe.name} (max_lr from the LR range test)")
    notices.append(max_lr_notice(result, max_lr))
    return resolved, result


# ------------------------------------------------------------------------ training
def _reduce(t: torch.Tensor, world_size: int = 1) -> torch.Tensor:
    """Sum a metric tensor over ranks (DDP: all_reduce SUM); the identity on one process."""
    return distributed.all_reduce_sum(t) if world_size > 1 else t


def train_epochs(t: Trainer) -> Iterator[dict]:
    """Train until ``recipe.epochs`` are done or a stop is requested, yielding events."""
    r = t.recipe
    yield {"type": "start", "epoch": t.epoch, "epochs": r.epochs, "steps": t.steps_per_epoch,
           "model": r.model, "params": t.params, "device": str(t.device),
           "train_images": t.batches.n, "test_images": len(t.test_y),
           "history": list(t.history), "resumed_step": t.step}
    for message in t.notices:
        yield {"type": "info", "message": message}
    t.notices = []
    while t.epoch < r.epochs:
        if t.world_size > 1:  # a signal may have reached one rank during the evaluation
            distributed.agree_stop(t)
        if t.stop_requested:
            yield _stopped(t)
            return
        finished = yield from _epoch(t)
        if not finished:
            return


def _stopped(t: Trainer) -> dict:
    return {"type": "stopped", "signal": t.stop_requested, "epoch": t.epoch, "step": t.step,
            "step_in_epoch": (t.progress or {}).get("step_in_epoch", 0)}


def _epoch(t: Trainer):
    """One epoch; returns False (after yielding "stopped") when a stop was requested."""
    r, dev = t.recipe, t.device
    epoch = t.epoch + 1
    saved = t.progress
    start = saved["step_in_epoch"] if saved else 0
    plan = t.batches.plan(saved)  # draws (or replays) this epoch's permutation
    mine = saved if t.rank == 0 else None  # saved sums are over all ranks: rank 0 carries them
    loss_sum = torch.tensor(mine["loss_sum"] if mine else 0.0, dtype=torch.float64, device=dev)
    correct = torch.tensor(mine["correct"] if mine else 0, dtype=torch.int64, device=dev)
    seen = mine["seen"] if mine else 0
    prior_seconds = saved["train_seconds"] if saved else 0.0
    t.progress = None
    watch = LossWatch(dev, r.loss.name)
    start_epoch(t.raw_model, t.epoch)
    t.model.train()
    t0 = time.perf_counter()
    seen_here = 0
    lr = t.lr
    for i, (x, y) in enumerate(plan.iterate(start), start=start):
        if t.kill_at == t.step + 1:
            os.kill(os.getpid(), 9)  # SIGKILL: nothing gets to run after this
        lr = t.lr
        with t.autocast():
            out = t.model(x)
            loss = t.loss_fn(out, y)
        if t.nan_at == t.step + 1:
            loss = loss * float("nan")
        # raises DivergedError / NegativeLossError (under DDP on the mean over ranks: all stop)
        watch.check(loss if t.world_size == 1 else distributed.mean_over_ranks(loss), t.step + 1)
        t.optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        t.scaler.step(t.optimizer)
        t.scaler.update()
        if t.sched_per_batch:
            t.scheduler.step()
        t.step += 1
        if t.lookahead is not None:
            t.lookahead.after_step(t.step)
        n = y.shape[0]
        loss_sum += loss.detach().double() * n
        correct += (out.detach().argmax(1) == y).sum()
        seen += n
        seen_here += n
        if t.stop_at is not None and t.step == t.stop_at:
            t.stop_requested = t.stop_requested or "SIGINT"
        last = i + 1 == plan.steps
        display = last or (i + 1) % t.display_every == 0
        # DDP: ranks agree on a stop at display points only, so they all stop at the same step
        stop = t.stop_requested if t.world_size == 1 else display and distributed.agree_stop(t)
        if stop or display:
            watch.flush()
            sums = torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(seen)])
            ls, c, s = _reduce(sums, t.world_size).tolist()
            elapsed = time.perf_counter() - t0
            yield {"type": "step", "epoch": epoch, "epochs": r.epochs, "step": i + 1,
                   "steps": plan.steps, "loss": ls / max(s, 1), "acc": 100.0 * c / max(s, 1),
                   "lr": lr, "images_per_s": seen_here * t.world_size / elapsed if elapsed > 0 else 0.0}
        if stop and not last:
            t.progress = {"step_in_epoch": i + 1, "loss_sum": ls,
                          "correct": int(c), "seen": int(s),
                          "train_seconds": prior_seconds + time.perf_counter() - t0,
                          "epoch_generator": plan.start_state}
            yield _stopped(t)
            return False
    watch.flush()
    train_time = time.perf_counter() - t0
    ls, c, s = _reduce(torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(seen)]),
                       t.world_size).tolist()
    test = _test_metrics(t)
    if t.scheduler is not None and not t.sched_per_batch:
        if isinstance(t.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            t.scheduler.step(test["acc"] if t.scheduler.mode == "max" else test["loss"])
        else:
            t.scheduler.step()
    t.epoch = epoch
    metrics = {"epoch": epoch, "train_loss": ls / max(s, 1), "train_acc": 100.0 * c / max(s, 1),
               "test_loss": test["loss"], "test_acc": test["acc"], "lr": lr,
               "seconds": prior_seconds + time.perf_counter() - t0,
               "train_seconds": prior_seconds + train_time,
               "images_per_s": seen_here * t.world_size / max(train_time, 1e-9)}
    t.history.append(metrics)
    best = test["acc"] > t.best_acc
    if best:
        t.best_acc, t.best_epoch = test["acc"], epoch
    yield {"type": "epoch", "epochs": r.epochs, "best": best, **metrics}
    return True


def _test_metrics(t: Trainer) -> dict:
    """The epoch's test loss and accuracy over the whole test split (DDP: in shares, summed)."""
    r = t.recipe
    kw = dict(normalize=t.normalize, batch_size=r.data.test_batch_size, loss_name=r.loss.name,
              autocast=t.autocast, channels_last=t.channels_last, tta=r.eval_tta)
    if t.world_size == 1:
        return evaluate(t.model, t.test_x, t.test_y, **kw)
    return distributed.evaluate_shares(evaluate, t, **kw)


# ------------------------------------------------------------------------ evaluation
def eval_loss(out: torch.Tensor, y: torch.Tensor, loss_name: str) -> torch.Tensor:
    """Summed test loss: plain cross-entropy (no smoothing), or nll on the outputs."""
    if loss_name == "nll":
        return F.nll_loss(out, y, reduction="sum")
    return F.cross_entropy(out, y, reduction="sum")


@torch.no_grad()
def evaluate(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, *, normalize: Callable,
             batch_size: int, loss_name: str = "cross_entropy", autocast=nullcontext,
             channels_last: bool = False, tta: str = "none") -> dict:
    """Loss, accuracy (%) and predictions on uint8 NCHW images, in eval mode, no grad.

    ``tta``: ``none``, ``flip`` or ``flip_translate`` (see :mod:`cifarctl.tta`).
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x_u8.device)
    preds = []
    try:
        for s in range(0, len(y), batch_size):
            xb = normalize(x_u8[s:s + batch_size])
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast():
                out = tta_forward(model, xb, tta)
            out = out.float()
            yb = y[s:s + batch_size]
            loss_sum += eval_loss(out, yb, loss_name).double()
            preds.append(out.argmax(1))
    finally:
        model.train(was_training)
    pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64, device=y.device)
    n = max(len(y), 1)
    loss_total, correct = _reduce(torch.stack([loss_sum, (pred == y).sum().double()])).tolist()
    return {"loss": loss_total / n, "acc": 100.0 * correct / n, "preds": pred, "n": len(y)}


# ------------------------------------------------------------------------ checkpoints
def state_dict(t: Trainer) -> dict:
    """The checkpoint of ``t`` (see :mod:`cifarctl.runs` for the format)."""
    r = t.recipe
    return {
        "format": "cifarctl-checkpoint", "version": 1,
        "model": t.raw_model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict() if t.scheduler is not None else None,
        "scaler": t.scaler.state_dict() if t.scaler.is_enabled() else None,
        "lookahead": t.lookahead.state_dict() if t.lookahead is not None else None,
        "rng": capture_rng(t.generator),
        "epoch": t.epoch, "step": t.step, "progress": dict(t.progress) if t.progress else None,
        "world_size": t.world_size,
        "best": {"acc": t.best_acc, "epoch": t.best_epoch},
        "history": [dict(h) for h in t.history],
        "recipe": r.to_dict(), "model_name": r.model, "model_args": dict(r.model_args),
        "params": t.params, "classes": list(t.classes), "data_source": t.data_source,
        "normalize": {"mean": list(r.data.normalize.mean), "std": list(r.data.normalize.std)},
        "cifarctl_version": __version__,
    }


def load_state_dict(t: Trainer, ckpt: dict, *, scheduler: bool = True) -> None:
    """Restore model, optimizer, scheduler, scaler, RNGs and counters from a checkpoint.

    ``scheduler=False`` leaves the schedule alone (see :func:`rebuild_scheduler`).
    """
    t.raw_model.load_state_dict(ckpt["model"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler and t.scheduler is not None and ckpt.get("scheduler") is not None:
        t.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler") is not None and t.scaler.is_enabled():
        t.scaler.load_state_dict(ckpt["scaler"])
    if t.lookahead is not None and ckpt.get("lookahead") is not None:
        t.lookahead.load_state_dict(ckpt["lookahead"])
    elif t.lookahead is not None:  # lookahead added with --force: it starts from the loaded weights
        t.lookahead.reset()
    restore_rng(ckpt["rng"], t.generator)
    t.epoch, t.step = int(ckpt["epoch"]), int(ckpt["step"])
    t.progress = ckpt.get("progress")
    t.best_acc = float(ckpt["best"]["acc"])
    t.best_epoch = int(ckpt["best"]["epoch"])
    t.history = [dict(h) for h in ckpt.get("history", [])]


def rebuild_scheduler(t: Trainer) -> None:
    """A fresh schedule from the (changed, ``--force``) recipe, advanced to where ``t`` is.

    Used instead of the checkpoint's scheduler state when the recipe changed on resume
    (e.g. more epochs: OneCycle's total_steps grows). ReduceLROnPlateau starts afresh.
    """
    if t.recipe.scheduler.name != "onecycle":  # the others start from the optimizer's lr
        for g in t.optimizer.param_groups:
            g["lr"] = g["initial_lr"] = t.recipe.optimizer.lr * g.get("lr_scale", 1.0)
    t.scheduler = build_scheduler(t.recipe, t.optimizer, t.steps_per_epoch, resolve_max_lr(t.recipe))
    if t.lookahead is not None:
        t.lookahead.total_steps = t.recipe.epochs * t.steps_per_epoch
    if t.scheduler is None or isinstance(t.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return
    n = t.step if t.sched_per_batch else t.epoch
    if t.sched_per_batch and n >= t.scheduler.total_steps:
        raise UsageError(f"the new schedule has {t.scheduler.total_steps} steps but the run already did {n}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(n):
            t.scheduler.step()

