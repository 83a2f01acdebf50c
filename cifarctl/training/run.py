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
from datetime import datetime
from pathlib import Path
from typing import Any

from cifarctl.errors import EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_TERMINATED, CifarctlError, Stopped, UsageError

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
    from cifarctl.recipe.targets import assignment_threshold, reference, target_verdict

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


# ------------------------------------------------------------------------ recipe
def _with_defaults(raw: dict) -> dict:
    """A stored recipe dict with every schema default filled in (as stored if it no longer validates)."""
    from pydantic import ValidationError

    from cifarctl.recipe.schema import Recipe

    try:
        return Recipe.model_validate(raw).to_dict()
    except ValidationError:
        return raw


def recipe_differences(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every resolved key that differs, ignoring data.source.

    ``old`` is completed with today's schema defaults first, so a key added to the schema
    after the run started (at its default) is not a difference.
    """
    from cifarctl.recipe.load import flatten

    a, b = flatten(_with_defaults(old)), flatten(new)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k == "data.source":
            continue
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            diffs.append(f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}")
    return diffs


def _source_spec(data: str | None) -> str | None:
    if data is None:
        return None
    p = Path(data).expanduser()
    return str(p.resolve()) if p.exists() else data


def _with_source(recipe, source: str | None):
    return recipe if source is None else recipe.replace({"data.source": source}, "with --data")


def _resolve_recipe(recipe_ref, overrides, seed, data, resume, force):
    """(recipe, checkpoint or None, checkpoint path or None, run dir or None)."""
    from cifarctl.recipe.load import apply_overrides, load_recipe, validate_dict
    from cifarctl.runs import resume_checkpoint, run_dir_of

    overrides = list(overrides or ())
    if seed is not None:
        overrides.append(f"seed={int(seed)}")
    ckpt = ckpt_path = run_dir = None
    if resume is not None:
        # last.pt, or best.pt when last.pt is damaged (ckpt["resume_note"] then says so)
        ckpt_path, ckpt, note = resume_checkpoint(resume)
        run_dir = run_dir_of(ckpt_path) or Path(resume)
        if not Path(run_dir).is_dir():
            raise UsageError(f"--resume {resume}: expected a run folder (runs/<recipe>-<time>)")
        ckpt["resume_note"] = note
    if recipe_ref is not None:
        recipe = load_recipe(recipe_ref, overrides)
    elif ckpt is not None:
        raw = apply_overrides(copy.deepcopy(ckpt["recipe"]), overrides)
        recipe = validate_dict(raw, f"{ckpt_path} (stored recipe)")
    else:
        raise UsageError("give a recipe (a bundled name or a .yaml path; `cifarctl recipes` lists them) "
                         "or --resume RUN_DIR")
    recipe = _with_source(recipe, _source_spec(data))
    if ckpt is not None:
        recipe = _keep_resolved_max_lr(recipe, ckpt["recipe"])
        diffs = recipe_differences(ckpt["recipe"], recipe.to_dict())
        if diffs and not force:
            shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
            raise UsageError(f"{run_dir}: the recipe differs from the run's ({shown}): resume with the "
                             "same recipe and --set options, or pass --force")
        if int(ckpt["epoch"]) >= recipe.epochs and not ckpt.get("progress"):
            raise UsageError(f"{run_dir} already finished its {recipe.epochs} epochs: nothing to resume "
                             "(to train longer: --set epochs=N --force)")
        stopped = (ckpt.get("early_stop") or {}).get("reason")
        if stopped and recipe.early_stop is not None and not diffs:
            raise UsageError(f"{run_dir} stopped early ({stopped}): nothing to resume (to train on: "
                             "--set early_stop.patience=N --force, or --set early_stop=null --force)")
    return recipe, ckpt, ckpt_path, run_dir


def _same_file(ref, path: Path) -> bool:
    try:
        return Path(str(ref)).resolve() == path.resolve()
    except OSError:
        return False


def _keep_resolved_max_lr(recipe, stored: dict):
    """On resume, ``max_lr: auto`` means the number the run's range test chose."""
    from cifarctl.training.builders import is_max_lr_auto

    chosen = (stored.get("scheduler") or {}).get("max_lr")
    if not is_max_lr_auto(recipe) or not isinstance(chosen, (int, float)):
        return recipe
    return recipe.replace({"scheduler.max_lr": float(chosen)}, "max_lr of the resumed run")


# ------------------------------------------------------------------------ epoch-end files
METRIC_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
               "ema_val_loss", "ema_val_acc", "ema_test_loss", "ema_test_acc", "lr", "seconds",
               "train_seconds", "images_per_s")


class _CurvesPace:
    """curves.png, drawn by the background writer at most every :attr:`EVERY` seconds
    (matplotlib takes ~0.3 s and the GIL), and once more when the run ends or stops."""

    EVERY = 30.0

    def __init__(self, files, enabled: bool = True):
        self.files, self.enabled, self.last, self.epochs = files, enabled, float("-inf"), None

    def maybe(self, history: list[dict]) -> None:
        if time.monotonic() - self.last >= self.EVERY:
            self._draw(history)

    def _draw(self, history: list[dict]) -> None:
        if self.enabled:  # rank 0 only
            from cifarctl.training.curves import write_curves

            write_curves(self.files.dir / "curves.png", history, title=self.files.dir.name)
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
            from cifarctl.runs import SecondSignal, defer_signal

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
def run_training(recipe: str | None = None, **kwargs) -> dict:
    """Train a recipe (or resume a run) into a run folder; see the module docstring and
    :func:`_run_training` for the arguments. The run folder is locked for the whole call."""
    from contextlib import ExitStack

    with ExitStack() as locks:
        return _run_training(recipe, locks=locks, **kwargs)


def _run_training(
    recipe: str | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    data: str | None = None,
    device: str = "auto",
    runs_dir: str | Path = "runs",
    name: str | None = None,
    seed: int | None = None,
    resume: str | Path | None = None,
    force: bool = False,
    view=None,
    argv: list[str] | None = None,
    progress: bool = False,
    locks=None,
    broken_rules: list[str] | None = None,
) -> dict:
    """Train a recipe (or resume a run) into a run folder; see the module docstring.

    ``view`` consumes the engine's events (:class:`cifarctl.ui.train_view.TrainView`, or
    any object with ``handle(event)``, ``finish(summary)`` and optionally
    ``lr_find_progress()``, a context giving the LR range test's progress callback).
    """
    from contextlib import nullcontext

    from cifarctl import runs
    from cifarctl.training import checkpoint, distributed, engine
    from cifarctl.training.builders import check_runnable, resolve_device
    from cifarctl.training.guards import DivergedError
    from cifarctl.training.lines import epoch_line, final_lines, start_line, stop_point
    from cifarctl.training.prepare import prepare
    from cifarctl.training.logs import TensorBoardLog, metrics_csv
    from cifarctl.training.writer import BackgroundWriter, host_copy

    recipe_obj, ckpt, ckpt_path, run_dir = _resolve_recipe(recipe, overrides, seed, data, resume, force)
    check_runnable(recipe_obj)
    dev = resolve_device(device)
    ranks = distributed.current()  # under torchrun: this process's rank; only rank 0 writes and prints
    dev, view, progress = ranks.device(dev), view if ranks.main else None, progress and ranks.main
    source = recipe_obj.data.source or (ckpt or {}).get("data_source")
    from cifarctl.data import source_key

    claimed: list[str] = []
    if ckpt is not None:  # lock the folder, then prove the checkpoint and the data are this run's
        edited = None if recipe is not None and _same_file(recipe, Path(run_dir) / "recipe.yaml") else \
            (lambda: runs.recipe_file_differences(run_dir, ckpt["recipe"], recipe_differences))
        claimed = distributed.on_main(lambda: runs.claim_run(
            run_dir, locks, ckpt=ckpt, ckpt_path=ckpt_path, data_key=source_key(source), force=force,
            recipe_file_diffs=edited), ranks) or []
    bar = getattr(view, "lr_find_progress", None) if progress else None
    with (bar() if bar is not None else nullcontext(None)) as lr_bar:
        trainer = prepare(recipe_obj, data_source=source, device=dev, progress=progress,
                          lr_find_progress=lr_bar, rank=ranks.rank, world_size=ranks.world_size)
    recipe_obj = trainer.recipe  # max_lr: auto is now the range test's number
    if broken_rules:
        trainer.rules_broken = list(broken_rules)
        trainer.notices.append("warning: --break-rules: this run breaks its assignment's rules ("
                               + "; ".join(broken_rules) + "); summary.json records it")
    if ckpt is not None:
        # only with --force: another recipe, or other data (its size sets the steps of the schedule)
        changed = bool(recipe_differences(ckpt["recipe"], recipe_obj.to_dict())) or bool(claimed)
        distributed.check_resume(ckpt, trainer, ckpt_path)
        try:
            checkpoint.load_state_dict(trainer, ckpt, scheduler=not changed)
            if changed:  # a new schedule (e.g. more epochs), advanced to where the run is
                checkpoint.rebuild_scheduler(trainer)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise UsageError(f"{ckpt_path}: cannot restore it into recipe {recipe_obj.name!r} "
                             f"({str(exc).splitlines()[0]})") from None
        del ckpt["model"], ckpt["optimizer"]

    if run_dir is None:
        run_dir = distributed.on_main(lambda: runs.create_run_dir(runs_dir, recipe_obj.name, name), ranks)
        distributed.on_main(lambda: runs.claim_run(run_dir, locks, data_key=source_key(source)), ranks)
    run_dir = Path(run_dir)
    files = runs.RunFiles(run_dir) if ranks.main else distributed.SilentFiles(run_dir)
    if ranks.main:
        def save(state, path):
            files.save_checkpoint(state, path)
    else:
        def save(state, path):
            pass
    trainer.notices.extend(claimed)
    import torch

    if ranks.main:
        device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
        env = runs.environment(str(dev), device_name, argv)
        runs.write_env(run_dir, {**env, "world_size": ranks.world_size})
        runs.write_atomic(run_dir / "recipe.yaml", recipe_obj.to_yaml())
    if trainer.lr_find is not None and ranks.main:
        from cifarctl.training.lrfind import write_lr_find

        write_lr_find(trainer.lr_find, run_dir)
    old = runs.read_json(run_dir / "summary.json") if ckpt is not None else None
    if ckpt is not None and not trainer.rules_broken and isinstance((old or {}).get("rules_broken"), list):
        trainer.rules_broken = [str(r) for r in old["rules_broken"]]  # a --break-rules run stays marked
    started = (old or {}).get("started") or datetime.now().astimezone().isoformat(timespec="seconds")
    if ckpt is not None:
        files.truncate_metrics(trainer.epoch)
        files.log(f"resumed from {ckpt_path} at epoch {trainer.epoch}, step {trainer.step}")
        if ckpt.get("resume_note"):  # last.pt was damaged: shown and logged with the notices
            trainer.notices.append(f"warning: {ckpt['resume_note']}")
    if view is not None:
        view.handle({"type": "info", "message": f"run folder {run_dir}"})

    def summary(status: str, error: str | None = None) -> dict:
        s = make_summary(trainer, status=status, run_dir=run_dir, started=started, error=error)
        files.summary(s)
        return s

    writer = BackgroundWriter()
    buffers: dict = {}  # the host copies' persistent buffers (pinned for CUDA tensors)
    curves = _CurvesPace(files, ranks.main)

    def epoch_end(ev: dict) -> None:
        """Hand the epoch's files to the writer: the loop waits only for the host copy."""
        writer.drain()  # the previous epoch's job is done (its error raised): its buffers are free
        snap = host_copy(checkpoint.state_dict(trainer), buffers)
        row = {k: ev[k] for k in METRIC_KEYS if k in ev}
        line, best, history = epoch_line(ev), ev["best"], [dict(h) for h in trainer.history]
        s = make_summary(trainer, status="running", run_dir=run_dir, started=started)

        def job() -> None:
            files.metrics(row)
            files.csv(metrics_csv(history))
            files.log(line)
            state = snap.ready()
            if best:  # best.pt first: a kill between the two saves leaves last.pt behind
                save(state, files.best)  # (resume redoes the epoch), never best.pt stale
            save(state, files.last)
            files.summary(s)
            curves.maybe(history)

        writer.submit(job)

    tb = TensorBoardLog(run_dir, recipe_obj, enabled=ranks.main)  # a bad tensorboard/ stops it here
    summary("running")
    events = engine.train_epochs(trainer)
    trainer.display_interval = getattr(view, "display_interval", None)
    try:
        try:
            with _StopOnSignal(trainer):
                for ev in events:
                    if view is not None:
                        view.handle(ev)
                    kind = ev["type"]
                    if kind == "start":
                        files.log(start_line(ev))
                    elif kind == "info":
                        files.log(ev["message"])
                    elif kind == "step":
                        tb.step(ev, trainer.step)
                    elif kind == "epoch":
                        tb.epoch(ev)
                        epoch_end(ev)
                    elif kind == "stopped":
                        writer.drain()
                        save(checkpoint.state_dict(trainer), files.last)
                        where = stop_point(trainer.epoch, ev["step_in_epoch"], trainer.steps_per_epoch)
                        msg = (f"stopped by {ev['signal']} {where}: saved {files.last}; continue with "
                               f"`cifarctl train --resume {run_dir}`")
                        files.log(msg)
                        summary("interrupted", msg)
                        raise TrainingInterrupted(msg, ev["signal"])
                writer.drain()  # a failed background write (a full disk) is this run's error
                tb.close(make_summary(trainer, status="completed", run_dir=run_dir, started=started))
        finally:
            events.close()
            writer.close()  # what the writer had is on disk before the run's status is written
            curves.now(trainer.history)
            tb.close()
    except TrainingInterrupted:
        raise
    except DivergedError as exc:
        kept = f" (last good checkpoint: {files.last})" if files.last.exists() else ""
        files.log(f"error: {exc}{kept}")
        summary("diverged", str(exc))
        raise
    except KeyboardInterrupt as exc:
        files.log(runs.second_signal_message(exc))
        summary("interrupted", runs.second_signal_message(exc))
        raise
    except CifarctlError as exc:
        files.log(f"error: {exc}")
        summary("failed", str(exc))
        raise
    except Exception as exc:
        files.log("".join(traceback.format_exception(exc)).rstrip())
        message = f"training failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        summary("failed", message)
        raise TrainingFailed(f"{message} (traceback in {run_dir / 'log.txt'})") from exc
    final = summary("completed")
    for line in final_lines(final):
        files.log(line)
    if view is not None:
        view.finish(final)
    return final
