"""Loss guards: a NaN/inf or negative loss stops training within one step.

:class:`LossWatch` judges every step's loss; :class:`DivergedError` (exit code 3) and
:class:`NegativeLossError` (exit code 4) say what went wrong and what to change.
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
