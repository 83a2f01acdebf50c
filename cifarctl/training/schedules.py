"""Learning-rate schedules torch does not have (the recipe's ``scheduler.name``)."""

from __future__ import annotations

import torch


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
