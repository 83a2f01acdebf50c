"""An exponential moving average of the weights (recipe ``ema``) and early stopping
(recipe ``early_stop``): the two end-of-run habits of the best public submissions.

EMA: ``torch.optim.swa_utils.AveragedModel`` holds the averaged copy (parameters and
BatchNorm statistics: ``use_buffers=True``) and ``get_ema_multi_avg_fn(decay)`` does the
update, ``ema <- decay * ema + (1 - decay) * weights``, after every optimizer step. For the
first ``warmup_steps`` steps the average follows the weights (a copy), so it does not drag
the random initial weights into the result. The update is driven here rather than through
``AveragedModel.update_parameters``, which reads its ``n_averaged`` counter on the host
every call (``bool(self.n_averaged == 0)``: a device sync per step on CUDA); the step
count is the trainer's own host integer, so nothing is read back. The counter is kept
up to date on the device so the state dict is AveragedModel's.

Early stopping: after each epoch's evaluation, the monitored figure (accuracy or loss on
the split that chooses best.pt: validation when there is one; the averaged weights' when
``ema`` is on) is held to the best so far; ``patience`` epochs without an improvement of
more than ``min_delta`` end the run, and the run folder says why.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA:
    """The averaged weights of ``model`` (the unwrapped one); call :meth:`after_step`."""

    def __init__(self, model: nn.Module, decay: float, warmup_steps: int = 0):
        self.decay, self.warmup_steps = float(decay), int(warmup_steps)
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        self.averaged.n_averaged = self.averaged.n_averaged.to(next(model.parameters()).device)
        self.averaged.eval()
        # state_dict tensors share storage with the live weights (load_state_dict copies in place)
        live = model.state_dict()
        mine = self.averaged.module.state_dict()
        self.floats = [(mine[k], v) for k, v in live.items() if v.is_floating_point()]
        self.others = [(mine[k], v) for k, v in live.items() if not v.is_floating_point()]
        self._copy = get_ema_multi_avg_fn(0.0)  # decay 0: the average becomes the weights

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """``step``: optimizer steps completed in the run (1-based). No host read."""
        update = self._copy if step <= self.warmup_steps else self.averaged.multi_avg_fn
        ema, live = [a for a, _ in self.floats], [b for _, b in self.floats]
        if ema:
            update(ema, live, None)
        for a, b in self.others:  # integer buffers (BatchNorm's batch counter) follow the model
            a.copy_(b)
        self.averaged.n_averaged += 1

    def state_dict(self) -> dict:
        return {k: v.detach().clone() for k, v in self.averaged.state_dict().items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """The average <- the current weights (a checkpoint without EMA state)."""
        self.averaged.module.load_state_dict(model.state_dict())
        self.averaged.n_averaged.fill_(0)


def build_ema(recipe, model: nn.Module) -> EMA | None:
    """The recipe's EMA over ``model`` (the uncompiled, unwrapped one), or None."""
    e = recipe.ema
    return None if e is None else EMA(model, e.decay, e.warmup_steps)


class EarlyStop:
    """Patience on one figure per epoch: :meth:`update` returns the reason to stop, or None."""

    def __init__(self, monitor: str, mode: str, patience: int, min_delta: float, split: str):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, int(patience), float(min_delta)
        self.split = split
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        self.reason: str | None = None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch: int, value: float) -> str | None:
        if math.isfinite(value) and self._better(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return None
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            shown = "n/a" if self.best is None else f"{self.best:.4g}"
            self.reason = (f"early stop after epoch {epoch}: {self.split} {self.monitor} did not improve by more "
                           f"than {self.min_delta:g} for {self.patience} epoch{'s' * (self.patience != 1)} "
                           f"(best {shown} at epoch {self.best_epoch})")
        return self.reason

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "reason": self.reason}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], int(state["best_epoch"])
        self.bad_epochs, self.reason = int(state["bad_epochs"]), state["reason"]


def build_early_stop(recipe, has_val: bool) -> EarlyStop | None:
    e = recipe.early_stop
    if e is None:
        return None
    mode = e.mode or ("max" if e.monitor == "acc" else "min")
    split = ("EMA " if recipe.ema is not None else "") + ("validation" if has_val else "test")
    return EarlyStop(e.monitor, mode, e.patience, e.min_delta, split)
