"""Training orchestration: recipe -> run folder -> engine -> view -> summary.

``run_training(...)`` is what ``cifarctl train`` calls; it works from Python too (pass
``view=None`` for no output). It returns the final summary dict, or raises:

- :class:`~cifarctl.errors.UsageError` (exit 2) for a bad recipe/option/checkpoint,
  before any folder is created (a refused resume creates nothing either);
- :class:`~cifarctl.training.guards.DivergedError` (exit 3), status "diverged";
- :class:`~cifarctl.training.guards.NegativeLossError` (exit 4), status "failed";
- :class:`TrainingInterrupted` (exit 130 for SIGINT, 143 for SIGTERM), status
  "interrupted", after saving ``last.pt`` with the mid-epoch state;
- :class:`TrainingFailed` (exit 1) for anything else, status "failed", traceback in log.txt.

A completed run returns normally (exit 0) whether or not it met the recipe's target:
the verdict is in the summary and printed.

"""


from __future__ import annotations

import copy
import signal
import threading
import time
import traceback
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from functools import partial
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from cifarctl import runs
from cifarctl.checkpoints import SecondSignal, defer_signal, resume_checkpoint, second_signal_message
from cifarctl.data import source_key
from cifarctl.errors import EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_TERMINATED, CifarctlError, Stopped, UsageError
from cifarctl.recipe.load import apply_overrides, load_recipe, recipe_differences, validate_dict
from cifarctl.recipe.schema import Recipe
from cifarctl.recipe.targets import assignment_threshold, reference, target_verdict
from cifarctl.training import checkpoint, curves, distributed, engine
from cifarctl.training.builders import check_runnable, is_max_lr_auto, resolve_device
from cifarctl.training.guards import DivergedError
from cifarctl.training.lines import epoch_line, final_lines, start_line, stop_point
from cifarctl.training.logs import TensorBoardLog, metrics_csv
from cifarctl.training.lrfind import write_lr_find
from cifarctl.training.prepare import prepare
from cifarctl.training.writer import BackgroundWriter, host_copy


EXIT_FOR_SIGNAL = {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": EXIT_TERMINATED, "SIGHUP": EXIT_HANGUP}


class TrainingInterrupted(Stopped):
    """SIGINT/SIGTERM: the run saved its state and stopped (exit 130/143), as asked: the CLI
    prints its message without ``error:``."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message, EXIT_FOR_SIGNAL.get(signal_name, EXIT_INTERRUPTED))
        self.signal_name = signal_name


class TrainingFailed(CifarctlError):
    """An unexpected error during training (exit 1); the traceback is in log.txt."""


# ------------------------------------------------------------------------ summary
def make_summary(trainer, *, status: str, run_dir: Path, started: str, error: str | None = None) -> dict:
    """summary.json: status, best/final accuracy, time, the target verdict, where and what."""
    r, h = trainer.recipe, trainer.history
    on_val = trainer.val_y is not None
    best_row = next((x for x in h if x["epoch"] == trainer.best_epoch), None)
    ema = trainer.ema is not None  # then the averaged weights are the run's model
    test_key = "ema_test_acc" if ema else "test_acc"
    # the test accuracy of the chosen epoch (chosen on the validation split when there is one)
    best = best_row.get(test_key) if best_row else (trainer.best_acc if trainer.best_epoch and not on_val else None)
    stopped = trainer.early_stop.reason if trainer.early_stop is not None else None
    partial = (trainer.progress or {}).get("train_seconds", 0.0)
    return {
        "recipe": r.name, "model": r.model, "params": trainer.params, "seed": r.seed,
        "status": status, "error": error,
        "epochs_done": trainer.epoch, "epochs_planned": r.epochs, "steps": trainer.step,
        "best_test_acc": best, "best_epoch": trainer.best_epoch or None,
        "selected_on": "val" if on_val else "test", "weights": "ema" if ema else "trained",
        **({"best_val_acc": trainer.best_acc if trainer.best_epoch else None} if on_val else {}),
        "final_test_acc": h[-1].get(test_key) if h else None,
        "final_test_loss": h[-1].get("ema_test_loss" if ema else "test_loss") if h else None,
        **({"ema": {"decay": trainer.ema.decay, "warmup_steps": trainer.ema.warmup_steps,
                    "trained_final_test_acc": h[-1]["test_acc"] if h else None}} if ema else {}),
        **({"stopped_early": stopped} if stopped else {}),
        "images_per_s": h[-1]["images_per_s"] if h else None,
        "total_seconds": sum(x["seconds"] for x in h) + partial,
        "target": target_verdict(r.target, best_acc=best, params=trainer.params, epochs=r.epochs,
                                 assignment=assignment_threshold(r)),
        **({"rules_broken": list(trainer.rules_broken)} if trainer.rules_broken else {}),
        **({"reference": reference(r)} if r.rules is not None else {}),
        "device": str(trainer.device), "world_size": trainer.world_size,
        "data": trainer.data_source, "classes": list(trainer.classes), "image_size": r.data.image_size,
        "run_dir": str(run_dir),
        "started": started, "updated": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------ what to train
@dataclass
class Plan:
    """What a ``train`` command trains: its recipe, loaded once, and for ``--resume`` the
    checkpoint it continues (``ckpt``, read from ``ckpt_path`` in ``run_dir``)."""

    recipe: Recipe
    ref: str | None = None  # the recipe as the command named it (a bundled name or a path)
    ckpt: dict | None = None
    ckpt_path: Path | None = None
    run_dir: Path | None = None
    force: bool = False


def plan_run(recipe: str | None = None, *, overrides=(), seed: int | None = None, data: str | None = None,
             resume: str | Path | None = None, force: bool = False) -> Plan:
    """The recipe (a bundled name or a path, with ``--set`` ``overrides``, ``--seed`` and
    ``--data``) or the run to resume, checked: a UsageError (exit 2) before anything is written."""
    overrides = list(overrides or ()) + ([f"seed={int(seed)}"] if seed is not None else [])
    ckpt = ckpt_path = run_dir = None
    if resume is not None:
        # last.pt, or best.pt when last.pt is damaged (ckpt["resume_note"] then says so)
        ckpt_path, ckpt, note = resume_checkpoint(resume)
        run_dir = Path(runs.run_dir_of(ckpt_path) or resume)
        if not run_dir.is_dir():
            raise UsageError(f"--resume {resume}: expected a run folder (runs/<recipe>-<time>)")
        ckpt["resume_note"] = note
    if recipe is not None:
        r = load_recipe(recipe, overrides)
    elif ckpt is not None:
        r = validate_dict(apply_overrides(copy.deepcopy(ckpt["recipe"]), overrides), f"{ckpt_path} (stored recipe)")
    else:
        raise UsageError("give a recipe (a bundled name or a .yaml path; `cifarctl recipes` lists them) "
                         "or --resume RUN_DIR")
    if data is not None:
        given = Path(data).expanduser()
        r = r.with_value("data.source", str(given.resolve()) if given.exists() else data)
    plan = Plan(r, recipe, ckpt, ckpt_path, run_dir, force)
    if ckpt is not None:
        _check_resume(plan)
    return plan


def _check_resume(plan: Plan) -> None:
    """The resumed run's recipe: ``max_lr: auto`` is the number its range test chose; any
    other difference needs ``force``; a finished or early-stopped run has nothing to resume."""
    ckpt, run_dir = plan.ckpt, plan.run_dir
    chosen = (ckpt["recipe"].get("scheduler") or {}).get("max_lr")
    if is_max_lr_auto(plan.recipe) and isinstance(chosen, (int, float)):
        plan.recipe = plan.recipe.with_value("scheduler.max_lr", float(chosen))
    diffs = recipe_differences(ckpt["recipe"], plan.recipe.to_dict())
    if diffs and not plan.force:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise UsageError(f"{run_dir}: the recipe differs from the run's ({shown}): resume with the "
                         "same recipe and --set options, or pass --force")
    if int(ckpt["epoch"]) >= plan.recipe.epochs and not ckpt.get("progress"):
        raise UsageError(f"{run_dir} already finished its {plan.recipe.epochs} epochs: nothing to resume "
                         "(to train longer: --set epochs=N --force)")
    stopped = (ckpt.get("early_stop") or {}).get("reason")
    if stopped and plan.recipe.early_stop is not None and not diffs:
        raise UsageError(f"{run_dir} stopped early ({stopped}): nothing to resume (to train on: "
                         "--set early_stop.patience=N --force, or --set early_stop=null --force)")


def _same_file(ref, path: Path) -> bool:
    try:
        return Path(str(ref)).resolve() == path.resolve()
    except OSError:
        return False


# ------------------------------------------------------------------------ epoch-end files
METRIC_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
               "ema_val_loss", "ema_val_acc", "ema_test_loss", "ema_test_acc", "lr", "seconds",
               "train_seconds", "images_per_s")


class _CurvesPace:
    """curves.png, drawn by the background writer at most every :attr:`EVERY` seconds
    (a matplotlib figure holds the GIL for a noticeable part of a second), and once more
    when the run ends or stops."""

    EVERY = 30.0

    def __init__(self, files, enabled: bool = True):
        self.files, self.enabled, self.last, self.epochs = files, enabled, float("-inf"), None

    def maybe(self, history: list[dict]) -> None:
        if time.monotonic() - self.last >= self.EVERY:
            self._draw(history)

    def _draw(self, history: list[dict]) -> None:
        if self.enabled:  # rank 0 only
            curves.write_curves(self.files.dir / "curves.png", history, title=self.files.dir.name)
        self.last, self.epochs = time.monotonic(), len(history)

    def now(self, history: list[dict]) -> None:
        """Draw unless current; best effort (on the way out the run's own error counts)."""
        if history and self.epochs != len(history):
            try:
                self._draw(history)
            except Exception:
                pass


# ------------------------------------------------------------------------ signals
class _StopOnSignal:
    """SIGINT/SIGTERM/SIGHUP ask the trainer to stop after its current step (saving
    last.pt, status interrupted); a second one aborts."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.old: dict[int, Any] = {}
        self.first = 0.0

    GRACE = 2.0  # seconds: under torchrun, Ctrl-C reaches a worker from the terminal and again from torchrun

    def _handler(self, signum, frame):
        if self.trainer.stop_requested:
            if self.trainer.world_size > 1 and time.monotonic() - self.first < self.GRACE:
                return
            name = signal.Signals(signum).name
            if defer_signal(name):  # a checkpoint is being written: stop once it is complete
                return
            raise SecondSignal(name)
        self.trainer.stop_requested = signal.Signals(signum).name
        self.first = time.monotonic()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: an SSH drop
                self.old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self.old.items():
            signal.signal(sig, old)


# ------------------------------------------------------------------------ the run
def run_training(recipe: Plan | str | None = None, *, overrides=(), seed: int | None = None,
                 data: str | None = None, resume: str | Path | None = None, force: bool = False,
                 **options) -> dict:
    """Train a :class:`Plan` (or a recipe, or resume a run: the arguments of
    :func:`plan_run`) into a run folder, locked for the whole call; see the module
    docstring, and :func:`open_run` for ``options``. Three parts: open the run, train its
    epochs, finish it (a summary whatever the end)."""
    plan = recipe if isinstance(recipe, Plan) else plan_run(
        recipe, overrides=overrides, seed=seed, data=data, resume=resume, force=force)
    with ExitStack() as locks:
        run = open_run(plan, locks, **options)
        try:
            run.train()
        except (Exception, KeyboardInterrupt) as exc:
            raise run.failed(exc)
        return run.finish()


def open_run(plan: Plan, locks: ExitStack, *, device: str = "auto", runs_dir: str | Path = "runs",
             name: str | None = None, view=None, argv: list[str] | None = None, progress: bool = False,
             broken_rules: list[str] | None = None) -> OpenRun:
    """The run folder made (or, to resume, claimed) and locked, the trainer ready on the
    device with the checkpoint restored, the start files written.

    ``view`` consumes the engine's events (:class:`cifarctl.ui.train_view.TrainView`, or
    any object with ``handle(event)``, ``finish(summary)`` and optionally
    ``lr_find_progress()``, a context giving the LR range test's progress callback).
    """
    check_runnable(plan.recipe)
    ranks = distributed.current()  # under torchrun: this process's rank; only rank 0 writes and prints
    dev = ranks.device(resolve_device(device))
    view, progress = (view, progress) if ranks.main else (None, False)
    source = plan.recipe.data.source or (plan.ckpt or {}).get("data_source")
    claimed = _claim(plan, locks, ranks, source) if plan.ckpt is not None else []
    bar = getattr(view, "lr_find_progress", None) if progress else None
    with (bar() if bar is not None else nullcontext(None)) as lr_bar:
        trainer = prepare(plan.recipe, data_source=source, device=dev, progress=progress,
                          lr_find_progress=lr_bar, rank=ranks.rank, world_size=ranks.world_size)
    if broken_rules:
        trainer.rules_broken = list(broken_rules)
        trainer.notices.append("warning: --break-rules: this run breaks its assignment's rules ("
                               + "; ".join(broken_rules) + "); summary.json records it")
    if plan.ckpt is not None:
        _restore(trainer, plan, changed=bool(claimed))
    run_dir = plan.run_dir
    if run_dir is None:
        run_dir = Path(distributed.on_main(lambda: runs.create_run_dir(runs_dir, trainer.recipe.name, name), ranks))
        distributed.on_main(lambda: runs.claim_run(run_dir, locks, data_key=source_key(source)), ranks)
    trainer.notices.extend(claimed)
    run = OpenRun(trainer, run_dir, ranks, view)
    if ranks.main:
        device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
        runs.write_env(run_dir, {**runs.environment(str(dev), device_name, argv), "world_size": ranks.world_size})
        runs.write_atomic(run_dir / "recipe.yaml", trainer.recipe.to_yaml())
        if trainer.lr_find is not None:
            write_lr_find(trainer.lr_find, run_dir)
    if plan.ckpt is not None:
        run.continue_from(plan)
    if view is not None:
        view.handle({"type": "info", "message": f"run folder {run_dir}"})
    run.tb = TensorBoardLog(run_dir, trainer.recipe, enabled=ranks.main)
    run.summary("running")
    return run


def _claim(plan: Plan, locks: ExitStack, ranks, source: str | None) -> list[str]:
    """Lock the resumed run's folder and prove the checkpoint and the data are its own:
    the notices of what ``--force`` let through."""
    run_dir = plan.run_dir
    edited = None if plan.ref is not None and _same_file(plan.ref, run_dir / "recipe.yaml") else \
        (lambda: runs.recipe_file_differences(run_dir, plan.ckpt["recipe"]))
    return distributed.on_main(lambda: runs.claim_run(
        run_dir, locks, ckpt=plan.ckpt, ckpt_path=plan.ckpt_path, data_key=source_key(source), force=plan.force,
        recipe_file_diffs=edited), ranks) or []


def _restore(trainer, plan: Plan, changed: bool) -> None:
    """Load the checkpoint into the trainer. Only with ``--force`` may the recipe or the data
    differ (``changed``: the data's size sets the steps of the schedule); then the schedule
    is built anew and advanced to where the run is."""
    ckpt = plan.ckpt
    changed = changed or bool(recipe_differences(ckpt["recipe"], trainer.recipe.to_dict()))
    distributed.check_resume(ckpt, trainer, plan.ckpt_path)
    try:
        checkpoint.load_state_dict(trainer, ckpt, scheduler=not changed)
        if changed:
            checkpoint.rebuild_scheduler(trainer)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UsageError(f"{plan.ckpt_path}: cannot restore it into recipe {trainer.recipe.name!r} "
                         f"({str(exc).splitlines()[0]})") from None
    del ckpt["model"], ckpt["optimizer"]


class OpenRun:
    """A run folder open for training: its trainer, its files, and the background writer
    that takes each epoch's files off the training loop."""

    def __init__(self, trainer, run_dir: Path, ranks, view):
        self.trainer, self.run_dir, self.view = trainer, run_dir, view
        self.files = runs.RunFiles(run_dir) if ranks.main else distributed.SilentFiles(run_dir)
        self.started = datetime.now().astimezone().isoformat(timespec="seconds")
        self.writer = BackgroundWriter()
        self.buffers: dict = {}  # the host copies' persistent buffers (pinned for CUDA tensors)
        self.curves = _CurvesPace(self.files, ranks.main)
        self.tb: TensorBoardLog | None = None  # opened last: a bad tensorboard/ stops the run there

    def continue_from(self, plan: Plan) -> None:
        """A resumed run keeps its start time and its --break-rules mark, and its metrics
        stop at the checkpoint's epoch."""
        t, ckpt = self.trainer, plan.ckpt
        old = runs.read_json(self.run_dir / "summary.json") or {}
        if not t.rules_broken and isinstance(old.get("rules_broken"), list):
            t.rules_broken = [str(r) for r in old["rules_broken"]]
        self.started = old.get("started") or self.started
        self.files.truncate_metrics(t.epoch)
        self.files.log(f"resumed from {plan.ckpt_path} at epoch {t.epoch}, step {t.step}")
        if ckpt.get("resume_note"):  # last.pt was damaged: shown and logged with the notices
            t.notices.append(f"warning: {ckpt['resume_note']}")

    def summary(self, status: str, error: str | None = None, *, write: bool = True) -> dict:
        s = make_summary(self.trainer, status=status, run_dir=self.run_dir, started=self.started, error=error)
        if write:
            self.files.summary(s)
        return s

    # -------------------------------------------------------------- part 2: the epochs
    def train(self) -> None:
        """Run the engine's epochs, logging its events and writing each epoch's files; a
        stop signal saves last.pt and raises :class:`TrainingInterrupted`."""
        t, files = self.trainer, self.files
        events = engine.train_epochs(t)
        t.display_interval = getattr(self.view, "display_interval", None)
        try:
            with _StopOnSignal(t):
                for ev in events:
                    if self.view is not None:
                        self.view.handle(ev)
                    kind = ev["type"]
                    if kind in ("start", "info"):
                        files.log(start_line(ev) if kind == "start" else ev["message"])
                    elif kind == "step":
                        self.tb.step(ev, t.step)
                    elif kind == "epoch":
                        self.tb.epoch(ev)
                        self._epoch_end(ev)
                    elif kind == "stopped":
                        self._stop(ev)
            self.writer.drain()  # a failed background write (a full disk) is this run's error
            self.tb.close(self.summary("completed", write=False))
        finally:
            events.close()
            self.writer.close()  # what the writer had is on disk before the run's status is written
            self.curves.now(t.history)
            self.tb.close()

    def _epoch_end(self, ev: dict) -> None:
        """Hand the epoch's files to the writer: the loop waits only for the host copy."""
        self.writer.drain()  # the previous epoch's job is done (its error raised): its buffers are free
        snap = host_copy(checkpoint.state_dict(self.trainer), self.buffers)
        row = {k: ev[k] for k in METRIC_KEYS if k in ev}
        history = [dict(h) for h in self.trainer.history]
        self.writer.submit(partial(self._write_epoch, row, epoch_line(ev), ev["best"], history,
                                   self.summary("running", write=False), snap))

    def _write_epoch(self, row: dict, line: str, best: bool, history: list[dict], summary: dict, snap) -> None:
        """In the writer's thread: the epoch's metrics, log line, checkpoints and summary."""
        files = self.files
        files.metrics(row)
        files.csv(metrics_csv(history))
        files.log(line)
        state = snap.ready()
        if best:  # best.pt first: a kill between the two saves leaves last.pt behind
            files.save_checkpoint(state, files.best)  # (resume redoes the epoch), never best.pt stale
        files.save_checkpoint(state, files.last)
        files.summary(summary)
        self.curves.maybe(history)

    def _stop(self, ev: dict) -> None:
        t, files = self.trainer, self.files
        self.writer.drain()
        files.save_checkpoint(checkpoint.state_dict(t), files.last)
        where = stop_point(t.epoch, ev["step_in_epoch"], t.steps_per_epoch)
        msg = (f"stopped by {ev['signal']} {where}: saved {files.last}; continue with "
               f"`cifarctl train --resume {self.run_dir}`")
        files.log(msg)
        self.summary("interrupted", msg)
        raise TrainingInterrupted(msg, ev["signal"])

    # -------------------------------------------------------------- part 3: the end
    def failed(self, exc: BaseException) -> BaseException:
        """Record how the run ended (log.txt, summary.json) and give the error to raise."""
        files = self.files
        if isinstance(exc, TrainingInterrupted):
            return exc
        if isinstance(exc, DivergedError):
            kept = f" (last good checkpoint: {files.last})" if files.last.exists() else ""
            files.log(f"error: {exc}{kept}")
            self.summary("diverged", str(exc))
            return exc
        if isinstance(exc, KeyboardInterrupt):
            files.log(second_signal_message(exc))
            self.summary("interrupted", second_signal_message(exc))
            return exc
        if isinstance(exc, CifarctlError):
            files.log(f"error: {exc}")
            self.summary("failed", str(exc))
            return exc
        files.log("".join(traceback.format_exception(exc)).rstrip())
        message = f"training failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.summary("failed", message)
        failure = TrainingFailed(f"{message} (traceback in {self.run_dir / 'log.txt'})")
        failure.__cause__ = exc  # `cifarctl --debug train` shows it
        return failure

    def finish(self) -> dict:
        """The completed run's summary, written, logged and shown."""
        final = self.summary("completed")
        for line in final_lines(final):
            self.files.log(line)
        if self.view is not None:
            self.view.finish(final)
        return final
