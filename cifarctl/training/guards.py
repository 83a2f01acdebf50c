"""Loss guards: a NaN/inf or negative loss stops training, naming the step where it began.

:class:`LossWatch` judges every step's loss *on the device*: no host read in the step. It
keeps, for each kind of bad loss, the first step that had one and its value, in device
tensors; the engine reads them with the running sums at display points and at the epoch
end (one host read), and :meth:`LossWatch.judge` raises :class:`DivergedError` (exit code
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
    """The first non-finite and the first negative loss of a run, kept on the device.

    ``add(loss)`` after every step (device ops only); ``vector()`` is what the engine reads
    at display points: ``[first non-finite step, first negative step, their losses]`` as
    float64 (steps are 1-based run steps, :data:`NONE` for none); ``judge(values)`` raises.
    """

    NEGATIVE = -1e-4  # rounding can give -1e-7 for a valid cross-entropy

    def __init__(self, device: torch.device, loss_name: str, step: int = 0):
        self.loss_name = loss_name
        self.count = torch.full((), step, dtype=torch.int64, device=device)  # steps done
        self.first = torch.full((2,), NONE, dtype=torch.int64, device=device)
        self.value = torch.zeros(2, dtype=torch.float32, device=device)

    @torch.no_grad()
    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float().reshape(())
        self.count += 1
        bad = torch.stack([~torch.isfinite(loss), loss < self.NEGATIVE])
        new = bad & (self.first == NONE)
        self.first = torch.where(new, self.count, self.first)
        self.value = torch.where(new, loss, self.value)

    def vector(self) -> torch.Tensor:
        return torch.cat([self.first.double(), self.value.double()])

    def judge(self, values: list[float]) -> None:
        """Raise for the earliest bad step in ``values`` (a read :meth:`vector`)."""
        nonfinite, negative, nonfinite_loss, negative_loss = values
        if min(nonfinite, negative) >= NONE:
            return
        if nonfinite <= negative:
            loss = nonfinite_loss if not math.isfinite(nonfinite_loss) else float("nan")
            raise DivergedError(int(nonfinite), loss)
        raise NegativeLossError(int(negative), negative_loss, self.loss_name)
