"""Faults injected on purpose, for the tests: one :class:`FaultPlan` per run.

The run layer (:func:`cifarctl.training.run.run_training`) builds it once from the
environment; the engine consults it at one place per step (``FaultPlan.at_step``), and
checkpoint saves call ``before_replace``. Outside the tests every field is None and the
plan does nothing.

=============================== ===================================================
``CIFARCTL_TEST_STOP_AT_STEP=k``  as if SIGINT arrived during step k: stop after it
``CIFARCTL_TEST_NAN_AT_STEP=k``   step k's loss is NaN (the divergence guard's test)
``CIFARCTL_TEST_KILL_AT_STEP=k``  SIGKILL this process at step k, before its update
``CIFARCTL_TEST_SLOW_SAVE=s``     sleep s seconds before a checkpoint replaces the old one
=============================== ===================================================
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

ENV_STOP_AT = "CIFARCTL_TEST_STOP_AT_STEP"
ENV_NAN_AT = "CIFARCTL_TEST_NAN_AT_STEP"
ENV_KILL_AT = "CIFARCTL_TEST_KILL_AT_STEP"
ENV_SLOW_SAVE = "CIFARCTL_TEST_SLOW_SAVE"


def _int(value: str | None) -> int | None:
    return int(value) if value and value.strip().lstrip("-").isdigit() else None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class FaultPlan:
    """Which fault to inject where; steps are 1-based optimizer steps of the whole run."""

    stop_at: int | None = None
    nan_at: int | None = None
    kill_at: int | None = None
    slow_save: float | None = None  # seconds

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> FaultPlan:
        return cls(stop_at=_int(environ.get(ENV_STOP_AT)), nan_at=_int(environ.get(ENV_NAN_AT)),
                   kill_at=_int(environ.get(ENV_KILL_AT)), slow_save=_float(environ.get(ENV_SLOW_SAVE)))

    def at_step(self, step: int, loss):
        """(the loss to use, a stop request or None) for step ``step``, after its forward pass."""
        if step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # nothing gets to run after this
        if step == self.nan_at:
            loss = loss * float("nan")
        return loss, "SIGINT" if step == self.stop_at else None

    def before_replace(self) -> None:
        """Called by a checkpoint save between writing the new file and replacing the old one."""
        if self.slow_save:
            time.sleep(self.slow_save)
