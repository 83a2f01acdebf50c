"""Faults injected into cifarctl for the tests, in every Python process the tests start.

The tests put this folder on ``PYTHONPATH`` (conftest.py), so each child interpreter runs
this file at start-up; in the test process itself conftest calls :func:`install`. The
faults are asked for with environment variables, read at the moment they apply:

=============================== ===================================================
``CIFARCTL_TEST_STOP_AT_STEP=k``  as if SIGINT arrived during step k: stop after it
``CIFARCTL_TEST_NAN_AT_STEP=k``   step k's loss is NaN (the divergence guard's test)
``CIFARCTL_TEST_KILL_AT_STEP=k``  SIGKILL this process at step k, before its update (once
                                  the background writer has the earlier epochs on disk)
``CIFARCTL_TEST_SLOW_SAVE=s``     sleep s seconds before a checkpoint replaces the old one
``CIFARCTL_TEST_WAIT_AT_STEP=k``  at step k print ``fault: waiting at step k`` and wait
                                  (up to 60 s) for a stop request (a real signal), then train it
=============================== ===================================================

They reach the product through seams patched here: the engine's ``_step``, the
``os.replace`` of the atomic writer (``cifarctl.fsutil``, slowed for checkpoints only) and
the background writer's ``submit`` (to know what to wait for before a kill).
cifarctl itself reads none of these variables.
"""

from __future__ import annotations

import os
import signal
import time

VARS = ("CIFARCTL_TEST_STOP_AT_STEP", "CIFARCTL_TEST_NAN_AT_STEP", "CIFARCTL_TEST_KILL_AT_STEP",
        "CIFARCTL_TEST_SLOW_SAVE", "CIFARCTL_TEST_WAIT_AT_STEP")


def _int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.strip().lstrip("-").isdigit() else None


def install() -> None:
    """Patch the two seams (once per process)."""
    from cifarctl import fsutil
    from cifarctl.training import engine

    if getattr(engine._step, "_faults", False):
        return
    from cifarctl.training import writer

    real_step, real_submit = engine._step, writer.BackgroundWriter.submit
    writers: list = []

    def submit(self, job):
        if self not in writers:
            writers.append(self)
        return real_submit(self, job)

    def step(t, x, y):
        n = t.step + 1
        if n == _int("CIFARCTL_TEST_KILL_AT_STEP"):
            for w in writers:  # "at step k": after the earlier epochs' files are on disk (they are
                w.drain()      # written in the background), before step k's update
            os.kill(os.getpid(), signal.SIGKILL)  # nothing gets to run after this
        if n == _int("CIFARCTL_TEST_WAIT_AT_STEP"):
            print(f"fault: waiting at step {n}", flush=True)
            deadline = time.monotonic() + 60
            while not t.stop_requested and time.monotonic() < deadline:
                time.sleep(0.01)
        if n == _int("CIFARCTL_TEST_STOP_AT_STEP"):
            t.stop_requested = t.stop_requested or "SIGINT"
        if n != _int("CIFARCTL_TEST_NAN_AT_STEP"):
            return real_step(t, x, y)
        loss_fn = t.loss_fn
        t.loss_fn = lambda out, target: loss_fn(out, target) * float("nan")
        try:
            return real_step(t, x, y)
        finally:
            t.loss_fn = loss_fn

    class SlowReplace:  # fsutil's os, with a pause before a file replaces the old one
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def replace(src, dst):
            seconds = os.environ.get("CIFARCTL_TEST_SLOW_SAVE")
            if seconds and ".pt.tmp-" in os.fspath(src):
                time.sleep(float(seconds))
            return os.replace(src, dst)

    step._faults = True
    engine._step, fsutil.os, writer.BackgroundWriter.submit = step, SlowReplace(), submit


if any(os.environ.get(v) for v in VARS):  # a child process started with a fault asked for
    try:
        install()
    except ImportError:  # not a cifarctl process
        pass
