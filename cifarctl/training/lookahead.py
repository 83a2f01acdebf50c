"""Lookahead averaging of the weights, as airbench94 does it (recipe ``lookahead``).

A slow copy of every floating-point entry of the model's ``state_dict`` (parameters and
BatchNorm running statistics). Every ``every_steps`` optimizer steps::

    d = decay ** every_steps * (step / total_steps) ** ramp_power
    slow <- slow + (1 - d) * (weights - slow);  weights <- slow

and after the last step of the run ``weights <- slow``, so the model that is evaluated
and saved at the end IS the averaged one. Early on d is ~0 (the slow copy follows the
weights); late in the run the weights are pulled back towards the average.
"""

from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    """The slow weights of ``model``; call :meth:`after_step` after each optimizer step."""

    def __init__(self, model: nn.Module, total_steps: int, every_steps: int = 5, decay: float = 0.95,
                 ramp_power: float = 3.0):
        self.total_steps, self.every_steps = int(total_steps), int(every_steps)
        self.decay, self.ramp_power = float(decay), float(ramp_power)
        # state_dict tensors share storage with the live parameters and buffers, and
        # load_state_dict copies into them in place, so these references stay valid.
        self.live = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
        self.slow = {k: v.detach().clone() for k, v in self.live.items()}

    def sync_decay(self, step: int) -> float:
        return self.decay ** self.every_steps * (min(step, self.total_steps) / self.total_steps) ** self.ramp_power

    @torch.no_grad()
    def sync(self, d: float) -> None:
        live, slow = list(self.live.values()), list(self.slow.values())
        if d != 1.0:  # lerp with weight 0 leaves slow as is
            torch._foreach_lerp_(slow, live, 1.0 - d)
        torch._foreach_copy_(live, slow)

    def after_step(self, step: int) -> None:
        """``step``: optimizer steps completed in the run (1-based)."""
        if step % self.every_steps == 0:
            self.sync(self.sync_decay(step))
        if step == self.total_steps:
            self.sync(1.0)

    def state_dict(self) -> dict:
        return {"slow": {k: v.clone() for k, v in self.slow.items()}}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        saved = state["slow"]
        if saved.keys() != self.slow.keys():
            raise KeyError(f"lookahead state holds {len(saved)} tensors, the model {len(self.slow)}")
        for k, v in self.slow.items():
            v.copy_(saved[k])

    @torch.no_grad()
    def reset(self) -> None:
        """slow <- the current weights (a checkpoint without lookahead state)."""
        for k, v in self.slow.items():
            v.copy_(self.live[k])


def build_lookahead(recipe, model: nn.Module, total_steps: int) -> Lookahead | None:
    """The recipe's lookahead over ``model`` (the uncompiled one), or None."""
    la = recipe.lookahead
    if la is None:
        return None
    return Lookahead(model, total_steps, every_steps=la.every_steps, decay=la.decay, ramp_power=la.ramp_power)
