"""Loss guards: a NaN/inf or negative loss stops training, naming the step where it began.

:class:`LossWatch` keeps every step's loss *on the device*: no host read in the step. The
first step with each kind of bad loss, and its value, are found from them when the engine
reads them with the running sums, at display points and at the epoch end (one host read), and :meth:`LossWatch.judge` raises :class:`DivergedError` (exit code
3) or :class:`NegativeLossError` (exit code 4). The same code runs on the CPU and on CUDA,
so the CPU tests exercise the GPU path. A run therefore stops at the next display point
after a bad step (off a terminal: the epoch end), never saving a checkpoint after it.
"""

from __future__ import annotations

import math

import torch

from cifarctl.errors import EXIT_BAD_LOSS, EXIT_DIVERGED, CifarctlError


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


NONE = 2**62  # "no bad step yet" (a MIN over ranks keeps the earliest real one)


class LossWatch:
    """The epoch's losses, kept on the device; the first non-finite and the first negative
    one are found when they are read.

    ``add(loss)`` after every step: one copy into a per-epoch buffer (2 ops, no host read);
    ``vector()`` is what the engine reads at display points: ``[first non-finite step,
    first negative step, their losses]`` as float64 (steps are 1-based run steps,
    :data:`NONE` for none); ``loss_sum(per_step, prior)`` the epoch's loss sum; ``judge(values)``
    raises.
    """

    NEGATIVE = -1e-4  # rounding can give -1e-7 for a valid cross-entropy

    def __init__(self, device: torch.device, loss_name: str, step: int = 0, steps: int = 1):
        self.loss_name = loss_name
        self.step = step  # run steps done before the first loss here
        self.losses = torch.zeros(max(steps, 1), dtype=torch.float32, device=device)
        self.n = 0

    @torch.no_grad()
    def add(self, loss: torch.Tensor) -> None:
        self.losses[self.n] = loss.reshape(())
        self.n += 1

    def vector(self) -> torch.Tensor:
        dev = self.losses.device
        if self.n == 0:
            return torch.tensor([NONE, NONE, 0.0, 0.0], dtype=torch.float64, device=dev)
        loss = self.losses[:self.n]
        bad = torch.stack([~torch.isfinite(loss), loss < self.NEGATIVE])  # (2, n)
        at = torch.where(bad, torch.arange(self.n, device=dev), self.n).amin(1)  # first bad index, or n
        found = at < self.n
        first = torch.where(found, at + self.step + 1, NONE)
        value = torch.where(found, loss[at.clamp(max=self.n - 1)], 0.0)
        return torch.cat([first.double(), value.double()])

    def loss_sum(self, per_step: int, prior: torch.Tensor) -> torch.Tensor:
        """``prior`` + every loss x ``per_step`` images, summed in float64 in step order (a
        resumed epoch adds to its saved sum exactly as the uninterrupted one did)."""
        return torch.cat([prior.view(1), self.losses[:self.n].double() * per_step]).cumsum(0)[-1]

    def judge(self, values: list[float]) -> None:
        """Raise for the earliest bad step in ``values`` (a read :meth:`vector`)."""
        nonfinite, negative, nonfinite_loss, negative_loss = values
        if min(nonfinite, negative) >= NONE:
            return
        if nonfinite <= negative:
            loss = nonfinite_loss if not math.isfinite(nonfinite_loss) else float("nan")
            raise DivergedError(int(nonfinite), loss)
        raise NegativeLossError(int(negative), negative_loss, self.loss_name)
