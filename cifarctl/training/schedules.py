"""Learning-rate schedules: the recipe's ``scheduler`` built over an optimizer, and the one
torch does not have (airbench94's :class:`LinearWarmupDecay`).

To add a schedule: a section class in :mod:`cifarctl.recipe.schema` (``Scheduler``), a branch in
:func:`build_scheduler` saying whether it steps per batch.
"""

from __future__ import annotations

import warnings

import torch

from cifarctl.errors import UsageError
from cifarctl.training.builders import group_lrs, peak_lr


class LinearWarmupDecay(torch.optim.lr_scheduler.LRScheduler):
    """airbench94's schedule, stepped once per batch.

    The factor on each group's lr rises linearly from ``start_factor`` at step 0 to 1 at
    ``int(total_steps * warmup_pct)``, then falls linearly to ``end_factor`` at
    ``total_steps``; steps past the end keep ``end_factor``.
    """

    def __init__(self, optimizer, total_steps: int, warmup_pct: float = 0.23,
                 start_factor: float = 0.2, end_factor: float = 0.07, last_epoch: int = -1):
        self.total_steps = int(total_steps)
        self.warmup_steps = int(total_steps * warmup_pct)
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        step = min(step, self.total_steps)
        if step < self.warmup_steps:
            frac = step / self.warmup_steps
            return self.start_factor * (1 - frac) + frac
        frac = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        return (1 - frac) + self.end_factor * frac

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]


def build_scheduler(recipe, optimizer, steps_per_epoch: int, max_lr: float | None = None):
    """``(scheduler or None, per_batch)``: the recipe's schedule over ``optimizer``.

    OneCycle and linear_warmup_decay are stepped after every batch (``per_batch``);
    step/multistep/cosine/plateau after every epoch (:func:`step_after_epoch`). ``max_lr``
    is OneCycle's peak, by default the recipe's (:func:`~cifarctl.training.builders.peak_lr`).
    """
    s = recipe.scheduler
    sch = torch.optim.lr_scheduler
    if s.name == "onecycle":
        max_lr = peak_lr(recipe) if max_lr is None else max_lr
        o = recipe.optimizer
        # SGD without momentum has nothing to cycle (torch would silently add momentum)
        cycle = not (o.name == "sgd" and o.momentum == 0)
        total = recipe.epochs * steps_per_epoch
        ends = [0.0, float(s.pct_start * total) - 1]  # torch's phase ends, as it computes them
        ends += [float(2 * s.pct_start * total) - 2, total - 1.0] if s.three_phase else [total - 1.0]
        if any(b == a for a, b in zip(ends, ends[1:])):
            # torch divides by zero when a phase ends where the previous one does
            raise UsageError(
                f"scheduler.pct_start: {s.pct_start} of {total} OneCycle steps ({recipe.epochs} x "
                f"{steps_per_epoch} per epoch) gives a phase of zero steps; change pct_start "
                f"(e.g. {s.pct_start + 0.05:.2f}) or train on more data or epochs")
        return sch.OneCycleLR(
            optimizer, max_lr=group_lrs(optimizer, max_lr), total_steps=recipe.epochs * steps_per_epoch,
            pct_start=s.pct_start, div_factor=s.div_factor, final_div_factor=s.final_div_factor,
            anneal_strategy=s.anneal_strategy, three_phase=s.three_phase, cycle_momentum=cycle), True
    if s.name == "step":
        return sch.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma), False
    if s.name == "multistep":
        return sch.MultiStepLR(optimizer, milestones=list(s.milestones), gamma=s.gamma), False
    if s.name == "cosine":
        return sch.CosineAnnealingLR(optimizer, T_max=s.t_max or recipe.epochs, eta_min=s.eta_min), False
    if s.name == "linear_warmup_decay":  # per batch, from each group's lr
        return LinearWarmupDecay(optimizer, recipe.epochs * steps_per_epoch, warmup_pct=s.warmup_pct,
                                 start_factor=s.start_factor, end_factor=s.end_factor), True
    if s.name == "plateau":
        return sch.ReduceLROnPlateau(optimizer, mode=s.mode, factor=s.factor, patience=s.patience,
                                     threshold=s.threshold, min_lr=s.min_lr), False
    return None, False


def step_after_epoch(scheduler, test: dict) -> None:
    """Step a per-epoch schedule after the epoch's test evaluation (plateau watches the
    test accuracy for ``mode: max``, else the test loss)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(test["acc"] if scheduler.mode == "max" else test["loss"])
    elif scheduler is not None:
        scheduler.step()


def advance(scheduler, steps: int) -> None:
    """Step ``scheduler`` ``steps`` times without training (a rebuilt schedule catching up)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(steps):
            scheduler.step()
