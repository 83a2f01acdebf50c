"""The training loop: a :class:`Trainer` and the generator that advances it, as plain events.

``train_epochs(trainer)`` trains until ``recipe.epochs`` are done or a stop is requested,
yielding dict events (the trainer comes from :func:`cifarctl.training.prepare.prepare`):

- ``{"type": "start", ...}`` once (a resumed run's ``resumed_step`` > 0 and its
  ``step_in_epoch``, 0 between epochs), then ``{"type": "info", "message"}`` notices;
- ``{"type": "step", "epoch", "step", "steps", "loss", "acc", "lr", "images_per_s"}`` at
  display points, running epoch averages as floats. Display points are time-based:
  every ``trainer.display_interval`` seconds (a live view sets a few per second), none
  mid-epoch when it is None (off a terminal), and always at a stop;
- ``{"type": "epoch", "epoch", "epochs", "train_loss", "train_acc", "test_loss",
  "test_acc", "lr", "seconds", "train_seconds", "images_per_s", "best"}`` (and
  ``val_loss``, ``val_acc`` with ``data.val_split``: then ``best`` goes by them) after each
  epoch's test evaluation (``seconds`` includes it, ``train_seconds`` does not; ``lr`` is
  the last step's; ``images_per_s`` is training throughput);
- ``{"type": "stopped", "signal", "epoch", "step", "step_in_epoch"}`` when ``trainer.stop_requested`` was set
  (by a signal handler): the generator returns after the current step.

Nothing here prints or writes files. Accuracies are in percent; steps are 1-based.

One step path for every device: the step queues work and reads nothing back. The
running sums and the loss guards (:class:`~cifarctl.training.guards.LossWatch`) live in
device tensors and are read in one transfer at display points and at the epoch end, where a
bad loss raises, naming the step where it began. So the host can run ahead of a GPU, and a
CPU test that counts host reads tells the truth about CUDA. Checkpoints are
:mod:`~cifarctl.training.checkpoint`.

Data-parallel under torchrun (``world_size`` > 1, see :mod:`cifarctl.training.distributed`):
each rank trains on its slice of every global batch through DDP (its gradient all-reduce is
the only collective in the step), metrics and loss guards are reduced over ranks at display
points, the test split is evaluated in shares, and stop requests and display wishes travel
on the host (:class:`~cifarctl.training.distributed.Agreement`), so every rank leaves the
loop at the same step. With one process all of this is the identity.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cifarctl.errors import UsageError
from cifarctl.recipe.schema import Recipe
from cifarctl.training import distributed
from cifarctl.training.batches import Batches
from cifarctl.training.builders import autocast, uses_channels_last
from cifarctl.training.evaluation import chunking, evaluate, view_count
from cifarctl.training.guards import LossWatch
from cifarctl.training.model_hooks import Freezer
from cifarctl.training.schedules import step_after_epoch


@dataclass
class Trainer:
    """Everything one training run holds; ``train_epochs`` advances it."""

    recipe: Recipe
    device: torch.device
    model: nn.Module            # what is called (maybe DDP-wrapped and torch.compile'd)
    raw_model: nn.Module        # what is saved
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sched_per_batch: bool       # stepped after every batch (else after every epoch)
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
    display_interval: float | None = None  # seconds between mid-epoch display points; None: none
    epoch: int = 0              # completed epochs
    step: int = 0               # completed optimizer steps, all epochs
    progress: dict | None = None  # mid-epoch state (set by a stop; restored on resume)
    best_acc: float = -1.0
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    stop_requested: str | None = None  # "SIGINT"/"SIGTERM": stop after the current step
    lr_find: Any = None         # the LRFindResult when max_lr was "auto"
    lookahead: Any = None       # cifarctl.training.lookahead.Lookahead when the recipe has one
    ema: Any = None             # cifarctl.training.ema.EMA when the recipe has one
    early_stop: Any = None      # cifarctl.training.ema.EarlyStop when the recipe has one
    rules_broken: list[str] = field(default_factory=list)  # trained with --break-rules: what it broke
    val_x: torch.Tensor | None = None  # data.val_split's held-out train images: what selects best.pt
    val_y: torch.Tensor | None = None
    clock: Callable[[], float] = time.perf_counter

    def autocast(self):
        return autocast(self.device, self.amp_dtype)

    @property
    def channels_last(self) -> bool:
        return uses_channels_last(self.recipe, self.device)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


# ------------------------------------------------------------------------ the loop
def train_epochs(t: Trainer) -> Iterator[dict]:
    """Train until ``recipe.epochs`` are done or a stop is requested, yielding events."""
    r = t.recipe
    yield {"type": "start", "epoch": t.epoch, "epochs": r.epochs, "steps": t.steps_per_epoch,
           "model": r.model, "params": t.params, "device": str(t.device),
           "train_images": t.batches.n, "test_images": len(t.test_y),
           "val_images": 0 if t.val_y is None else len(t.val_y),
           "history": list(t.history), "resumed_step": t.step,
           "step_in_epoch": (t.progress or {}).get("step_in_epoch", 0)}
    for message in t.notices:
        yield {"type": "info", "message": message}
    t.notices = []
    if t.epoch < r.epochs:
        _check_eval_fits(t)
    while t.epoch < r.epochs:
        if t.world_size > 1:  # a signal may have reached one rank during the evaluation
            distributed.agree_stop(t)
        if t.stop_requested:
            yield _stopped(t)
            return
        finished = yield from _epoch(t)
        if not finished:
            return
        if t.early_stop is not None and t.early_stop.reason:
            yield {"type": "info", "message": t.early_stop.reason}
            return


def _epoch(t: Trainer):
    """One epoch; returns False (after yielding "stopped") when a stop was requested."""
    epoch = t.epoch + 1
    saved, t.progress = t.progress, None
    start = saved["step_in_epoch"] if saved else 0
    plan = t.batches.plan(saved)  # draws (or replays) this epoch's permutation
    sums = _Sums(t, saved)
    watch = LossWatch(t.device, t.recipe.loss.name, t.step, plan.steps - start)
    prior_seconds = saved["train_seconds"] if saved else 0.0
    freezer = Freezer(t.raw_model, t.epoch)
    agreement = distributed.Agreement(t) if t.world_size > 1 else None
    t.model.train()
    t0 = t.clock()
    next_display = t0 + t.display_interval if t.display_interval else None
    lr = t.lr
    for i, (x, y) in enumerate(plan.iterate(start), start=start):
        lr = t.lr
        out, loss = _step(t, x, y)
        freezer.after_step()
        sums.add(out, y)
        watch.add(loss)
        last = i + 1 == plan.steps
        wish = next_display is not None and t.clock() >= next_display
        if agreement is None:
            stop, display = t.stop_requested, wish
        else:  # every rank must reach the same display points and stop at the same step
            stop, display = agreement.poll(i + 1, wish)
        if last:
            break
        if stop or display:
            ls, c, s = _read(t, sums, watch)
            elapsed = t.clock() - t0
            yield {"type": "step", "epoch": epoch, "epochs": t.recipe.epochs, "step": i + 1,
                   "steps": plan.steps, "loss": ls / max(s, 1), "acc": 100.0 * c / max(s, 1), "lr": lr,
                   "images_per_s": sums.here * t.world_size / elapsed if elapsed > 0 else 0.0}
            if next_display is not None:
                next_display = t.clock() + t.display_interval
        if stop:
            if agreement is not None:
                agreement.close()
            t.progress = {"step_in_epoch": i + 1, "loss_sum": ls, "correct": int(c), "seen": int(s),
                          "train_seconds": prior_seconds + t.clock() - t0,
                          "epoch_generator": plan.start_state}
            yield _stopped(t)
            return False
    if agreement is not None:
        agreement.close()
    ls, c, s = _read(t, sums, watch)
    train_time = t.clock() - t0
    yield {"type": "step", "epoch": epoch, "epochs": t.recipe.epochs, "step": plan.steps,
               "steps": plan.steps, "loss": ls / max(s, 1), "acc": 100.0 * c / max(s, 1), "lr": lr,
               "images_per_s": sums.here * t.world_size / max(train_time, 1e-9)}
    test = _test_metrics(t, t.test_x, t.test_y)
    val = _test_metrics(t, t.val_x, t.val_y) if t.val_y is not None else None
    chooser = val or test  # what best.pt and a plateau schedule go by
    averaged = {}
    if t.ema is not None:  # the averaged weights are the run's model: they choose best.pt
        ema_test = _test_metrics(t, t.test_x, t.test_y, t.ema.module)
        ema_val = _test_metrics(t, t.val_x, t.val_y, t.ema.module) if t.val_y is not None else None
        chooser = ema_val or ema_test
        averaged = {"ema_test_loss": ema_test["loss"], "ema_test_acc": ema_test["acc"],
                    **({"ema_val_loss": ema_val["loss"], "ema_val_acc": ema_val["acc"]} if ema_val else {})}
    if not t.sched_per_batch:
        step_after_epoch(t.scheduler, chooser)
    t.epoch = epoch
    metrics = {"epoch": epoch, "train_loss": ls / max(s, 1), "train_acc": 100.0 * c / max(s, 1),
               **({"val_loss": val["loss"], "val_acc": val["acc"]} if val else {}),
               "test_loss": test["loss"], "test_acc": test["acc"], **averaged, "lr": lr,
               "seconds": prior_seconds + t.clock() - t0,
               "train_seconds": prior_seconds + train_time,
               "images_per_s": sums.here * t.world_size / max(train_time, 1e-9)}
    t.history.append(metrics)
    best = chooser["acc"] > t.best_acc
    if best:
        t.best_acc, t.best_epoch = chooser["acc"], epoch
    if t.early_stop is not None:  # before the epoch's files are written: the checkpoint holds the verdict
        t.early_stop.update(epoch, chooser[t.early_stop.monitor])
    yield {"type": "epoch", "epochs": t.recipe.epochs, "best": best, **metrics}
    return True


def _step(t: Trainer, x: torch.Tensor, y: torch.Tensor):
    """One optimizer step on the batch ``(x, y)``; returns (outputs, loss). No host read."""
    with t.autocast():
        out = t.model(x)
        loss = t.loss_fn(out, y)
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    t.scaler.step(t.optimizer)
    t.scaler.update()
    if t.sched_per_batch:
        t.scheduler.step()
    t.step += 1
    if t.lookahead is not None:
        t.lookahead.after_step(t.step)
    if t.ema is not None:
        t.ema.after_step(t.step)
    return out, loss


def _read(t: Trainer, sums: _Sums, watch: LossWatch) -> tuple[float, float, float]:
    """(loss sum, correct, images) of the epoch so far, over all ranks: the one host read
    of a display point. Raises the loss guards' error first."""
    head, flags = sums.vector(watch), watch.vector()
    if t.world_size > 1:
        head = distributed.all_reduce_sum(head)
        flags = torch.cat([distributed.all_reduce_min(flags[:2]), flags[2:]])
    values = torch.cat([head, flags]).tolist()
    watch.judge(values[3:])
    return values[0], values[1], values[2]


class _Sums:
    """The epoch's correct count and images, kept on the device (no sync per step), and its
    loss sum from the losses the :class:`LossWatch` keeps; a resumed epoch starts from the
    saved sums (rank 0 carries them: they are over all ranks)."""

    def __init__(self, t: Trainer, saved: dict | None):
        mine = saved if t.rank == 0 else None
        self.loss = torch.full((), mine["loss_sum"] if mine else 0.0, dtype=torch.float64, device=t.device)
        self.correct = torch.full((), mine["correct"] if mine else 0, dtype=torch.int64, device=t.device)
        self.seen = mine["seen"] if mine else 0
        self.here = 0  # images of this process since the epoch (re)started: the throughput
        self.batch = 0  # images per step (every batch is full)

    @torch.no_grad()
    def add(self, out: torch.Tensor, y: torch.Tensor) -> None:
        n = y.shape[0]
        self.correct += (out.argmax(1) == y).sum()
        self.seen += n
        self.here += n
        self.batch = n

    def vector(self, watch: LossWatch) -> torch.Tensor:
        """[loss sum, correct, images] as float64 on the device (this rank's share)."""
        loss = watch.loss_sum(self.batch, self.loss)
        return torch.stack([loss, self.correct.double(), torch.full_like(loss, self.seen)])


def _check_eval_fits(t: Trainer) -> None:
    """One evaluation pass of the epochs' largest shape, before the first step: a
    ``data.test_batch_size`` too large for the device's memory is one line now, not an
    out-of-memory error after a whole epoch of training. No random numbers are drawn."""
    r = t.recipe
    size = chunking(len(t.test_y), r.data.test_batch_size, view_count(r.eval_tta))
    try:
        evaluate(t.model, t.test_x[:size], t.test_y[:size], normalize=t.normalize,
                 batch_size=r.data.test_batch_size, loss_name=r.loss.name, autocast=t.autocast,
                 channels_last=t.channels_last, tta=r.eval_tta)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        if not isinstance(exc, torch.OutOfMemoryError) and "memory" not in first.lower():
            raise
        raise UsageError(f"data.test_batch_size={r.data.test_batch_size}: one evaluation pass of {size} images"
                         f"{'' if r.eval_tta == 'none' else f' x {view_count(r.eval_tta)} views'} does not fit "
                         f"in {t.device} memory ({first}); lower data.test_batch_size") from None


def _stopped(t: Trainer) -> dict:
    return {"type": "stopped", "signal": t.stop_requested, "epoch": t.epoch, "step": t.step,
            "step_in_epoch": (t.progress or {}).get("step_in_epoch", 0)}


def _test_metrics(t: Trainer, x: torch.Tensor, y: torch.Tensor, model: nn.Module | None = None) -> dict:
    """The epoch's loss and accuracy of ``model`` (the trained one by default) over a whole
    split (DDP: in shares, summed)."""
    r = t.recipe
    kw = dict(normalize=t.normalize, batch_size=r.data.test_batch_size, loss_name=r.loss.name,
              autocast=t.autocast, channels_last=t.channels_last, tta=r.eval_tta)
    model = t.model if model is None else model
    if t.world_size == 1:
        return evaluate(model, x, y, **kw)
    return distributed.evaluate_shares(evaluate, t, x, y, model=model, **kw)
