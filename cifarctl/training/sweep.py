"""Many training runs driven by Optuna: grids over recipe values and seeds, or sampled
trials, resumable, one run folder per trial.

``cifarctl sweep RECIPE... --out DIR`` keeps the study in ``DIR/study.journal`` (Optuna's
journal file storage: no server; ``storage`` takes a database URL instead) and every
trial's run folder in ``DIR/runs/<name>``, an ordinary run folder named by a readable part
and a hash of the trial's whole setting (:func:`trial_name`), so two settings never share
one. A trial is one ``cifarctl train`` process (``python -m cifarctl``), so a crash or a
kill takes one trial, never the driver's bookkeeping.

Several drivers (processes or machines sharing the folder, or ``--storage``) work one
sweep: a driver claims each trial with a lock on ``DIR/.claims/<name>`` (dropped by the
kernel when the driver dies), so no driver fails, deletes or retrains another's live trial.
The study is named from the sweep's folder and setting (:func:`study_name`).

Resuming: the same command again keeps the finished trials (a completed folder is never
deleted; a repeated sample reuses it), resumes an interrupted one from its checkpoint
(``train --resume``), records one whose training finished after the driver died, and
trains nothing twice; a different grid in the same folder is refused.

:func:`run_sweep` is a generator of plain events (``plan``, ``start``, ``end``), as the
training loop is; :mod:`cifarctl.ui.sweep_view` shows them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from cifarctl.errors import UsageError
from cifarctl.training.sweep_store import _is_real_dir, claim, claimed_elsewhere, open_study

MAX_GRID = 10_000     # trials in one sweep (grid points, or --trials)
MAX_WORKERS = 64      # trials at once (--workers, or one per --gpus id)
_RANGE = re.compile(r"^(?:(log|int):)?([^.][^:]*?)\.\.(.+)$")


# ------------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class Axis:
    """One ``--set``: a key and its grid values, or a range to sample (``lo..hi``,
    ``log:lo..hi``, ``int:lo..hi``)."""

    key: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None


def _value(text: str) -> Any:
    import yaml

    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return v if isinstance(v, (str, int, float, bool)) or v is None else text


def parse_axis(text: str) -> Axis:
    """``key=v1,v2`` (a grid) or ``key=[log:|int:]lo..hi`` (a range to sample)."""
    key, eq, rest = text.partition("=")
    key = key.strip()
    if not eq or not key or not rest.strip():
        raise UsageError(f"--set {text!r}: write KEY=V1,V2,... or KEY=LOW..HIGH (log:LOW..HIGH, int:LOW..HIGH)")
    m = _RANGE.match(rest.strip())
    if m:
        kind, lo, hi = m.groups()
        try:
            low, high = float(lo), float(hi)
        except ValueError:
            raise UsageError(f"--set {text!r}: a range needs two numbers, LOW..HIGH") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high) or (kind == "log" and low <= 0):
            raise UsageError(f"--set {text!r}: a range needs finite LOW < HIGH (and LOW > 0 for log:)")
        if kind == "int" and not (low.is_integer() and high.is_integer()):
            raise UsageError(f"--set {text!r}: an int: range needs whole-number bounds, e.g. int:1..3")
        return Axis(key, low=low, high=high, log=kind == "log", integer=kind == "int")
    values = tuple(_value(v.strip()) for v in rest.split(","))
    if len(values) > MAX_GRID:
        raise UsageError(f"--set {key}: {len(values)} values (at most {MAX_GRID} trials in a sweep)")
    # 1, 1.0 and true are one value to Optuna (it looks a choice up with ==): give it once
    if len(set(values)) != len(values) or len(set(map(repr, values))) != len(values):
        raise UsageError(f"--set {text!r}: a value is given twice (1, 1.0 and true count as one)")
    return Axis(key, values=values)


def parse_seeds(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    from cifarctl.recipe.schema import MAX_SEED

    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"--seeds {text[:60]!r}: expected integers, e.g. --seeds 1,2,3") from None
    if any(not 0 <= s <= MAX_SEED for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text[:60]!r}: expected distinct integers from 0 to {MAX_SEED} (2**64 - 1)")
    if len(seeds) > MAX_GRID:
        raise UsageError(f"--seeds: {len(seeds)} seeds (at most {MAX_GRID} trials in a sweep)")
    return seeds


def parse_gpus(text: str) -> list[int]:
    """``--gpus 0,1,2``: distinct GPU ids >= 0, at most :data:`MAX_WORKERS` of them."""
    parts = [g.strip() for g in text.split(",")]
    if not text.strip() or any(not p.isdigit() for p in parts):
        raise UsageError(f"--gpus {text[:60]!r}: expected GPU ids >= 0 separated by commas, e.g. --gpus 0,1")
    ids = [int(p) for p in parts]
    if len(set(ids)) != len(ids):
        raise UsageError(f"--gpus {text[:60]!r}: a GPU id is given twice (one worker per GPU)")
    if len(ids) > MAX_WORKERS:
        raise UsageError(f"--gpus: {len(ids)} GPUs (at most {MAX_WORKERS} workers, one per GPU)")
    return ids


@dataclass
class Spec:
    """What a sweep is: recipes, axes, seeds, sampler and trial count (stored in the study
    and in ``DIR/sweep.json``; a rerun must match it)."""

    recipes: list[str]
    axes: list[Axis]
    seeds: tuple[int, ...] = ()
    sampler: str = "grid"          # grid | random | tpe
    trials: int | None = None      # sampled trials (random/tpe)
    extra: list[str] = field(default_factory=list)  # train options every trial gets (--data, --device)

    def to_json(self) -> dict:
        return {"recipes": self.recipes, "seeds": list(self.seeds), "sampler": self.sampler, "trials": self.trials,
                "axes": [{"key": a.key, "values": list(a.values), "low": a.low, "high": a.high, "log": a.log,
                          "integer": a.integer} for a in self.axes], "extra": self.extra}

    def check(self) -> None:
        if self.sampler not in ("grid", "random", "tpe"):
            raise UsageError(f"--sampler {self.sampler!r}: expected grid, random or tpe")
        ranges = [a.key for a in self.axes if a.is_range]
        if self.sampler == "grid" and ranges:
            raise UsageError(f"--set {ranges[0]}=LOW..HIGH is a range to sample: add --trials N "
                             "--sampler random|tpe, or give values (--set KEY=V1,V2)")
        if self.sampler != "grid" and not self.trials:
            raise UsageError(f"--sampler {self.sampler} needs --trials N")
        if len({a.key for a in self.axes}) != len(self.axes):
            raise UsageError("--set names a key twice: give all its values in one --set KEY=V1,V2")
        if self.sampler == "grid" and self.size() > MAX_GRID:
            raise UsageError(f"the grid has {self.size():,} points (recipes x values x seeds): at most "
                             f"{MAX_GRID:,} trials in a sweep; give fewer values, or sample --trials N")

    def size(self) -> int:
        """Grid points, counted without building them."""
        return math.prod([len(self.recipes)] + [len(a.values) for a in self.axes] + [len(self.seeds) or 1])

    def grid(self) -> list[dict]:
        """Every grid point: ``{"recipe", "seed" (or absent), key: value, ...}``."""
        names = ["recipe"] + [a.key for a in self.axes] + (["seed"] if self.seeds else [])
        values = [self.recipes] + [list(a.values) for a in self.axes] + ([list(self.seeds)] if self.seeds else [])
        return [dict(zip(names, combo)) for combo in product(*values)]

    def distributions(self) -> dict:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out: dict[str, Any] = {"recipe": CategoricalDistribution(self.recipes)}
        for a in self.axes:
            if not a.is_range:
                out[a.key] = CategoricalDistribution(list(a.values))
            elif a.integer:
                out[a.key] = IntDistribution(int(a.low), int(a.high), log=a.log)
            else:
                out[a.key] = FloatDistribution(a.low, a.high, log=a.log)
        if self.seeds:
            out["seed"] = CategoricalDistribution(list(self.seeds))
        return out


# ------------------------------------------------------------------------ a trial
def setting_key(params: dict) -> str:
    """A trial's whole setting as one string: equal exactly when the settings are (1 and 1.0
    differ, as do 'a/b' and 'a_b')."""
    return json.dumps(params, sort_keys=True, default=repr)


def trial_name(params: dict) -> str:
    """The run folder name of a trial: a readable part (its recipe and values, escaped to
    ``[A-Za-z0-9._=+-]``, cut at 60 characters) and a hash of its whole setting, so two
    settings never share a folder however alike they print; the order of the keys does not
    matter."""
    parts = [Path(str(params["recipe"])).name.removesuffix(".yaml").removesuffix(".yml")]
    parts += [f"{k.split('.')[-1]}={_short(params[k])}" for k in sorted(params) if k not in ("recipe", "seed")]
    if "seed" in params:
        parts.append(f"seed{params['seed']}")
    readable = re.sub(r"[^A-Za-z0-9._=+-]+", "_", "-".join(parts))[:60].lstrip(".-_") or "trial"
    return f"{readable}-{hashlib.sha256(setting_key(params).encode()).hexdigest()[:10]}"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def set_value(v: Any) -> str:
    """A grid value as ``--set``'s YAML reads it back: None is ``null`` (not the string
    'None'), a string is quoted, a float keeps every digit."""
    if isinstance(v, float) and not math.isfinite(v):
        return ".nan" if math.isnan(v) else (".inf" if v > 0 else "-.inf")
    if isinstance(v, str):
        import yaml

        try:
            if isinstance(yaml.safe_load(v), (dict, list)):
                return v  # a mapping or list written in YAML (--set 'scheduler={name: none}'): as given
        except yaml.YAMLError:
            pass
    return "null" if v is None else json.dumps(v)


def train_args(params: dict, spec: Spec) -> list[str]:
    """The ``cifarctl train`` arguments of a fresh trial."""
    args = ["train", str(params["recipe"])]
    for k, v in params.items():
        if k not in ("recipe", "seed"):
            args += ["--set", f"{k}={set_value(v)}"]
    if "seed" in params:
        args += ["--seed", str(params["seed"])]
    return args + list(spec.extra)


def run_state(run_dir: Path) -> tuple[str, float | None]:
    """(``completed`` / ``resumable`` / ``new``, the trial's value when completed): what a
    trial's folder says of it. The value is the best validation accuracy when the run had a
    validation split, else its best test accuracy."""
    from cifarctl.runs import read_json

    summary = read_json(run_dir / "summary.json") or {}
    if summary.get("status") == "completed":
        value = summary.get("best_val_acc") if summary.get("selected_on") == "val" else summary.get("best_test_acc")
        return "completed", value if isinstance(value, (int, float)) else None
    if (run_dir / "checkpoints" / "last.pt").is_file() or (run_dir / "checkpoints" / "best.pt").is_file():
        return "resumable", None
    return "new", None


def _die_with_parent() -> None:
    """In a trial process: SIGTERM when the driver dies however it dies (kill -9 too), so
    the trial saves its checkpoint and no orphan holds the run's lock."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _clear_unstarted(folder: Path) -> str:
    """Remove a trial folder left before its first checkpoint (nothing in it to keep), or
    say why it cannot be: a live trainer holds it, or it is not a plain folder."""
    import shutil

    from cifarctl.runs import RunInUse, RunLock

    if not os.path.lexists(folder):
        return ""
    if not _is_real_dir(folder):
        return f"error: {folder} is not a folder (a link or a file is in the way): move it aside"
    try:
        with RunLock(folder):
            shutil.rmtree(folder)
    except RunInUse as exc:
        return f"error: {exc}"
    except (OSError, UsageError) as exc:
        return f"error: cannot clear {folder} ({getattr(exc, 'strerror', None) or exc})"
    return ""


def run_trial(params: dict, spec: Spec, runs: Path, env: dict, resume: bool) -> tuple[int, str]:
    """Train one trial to its end in a child process: (exit code, its last error line).
    Called with the trial claimed (:func:`claim`), so no other driver touches its folder."""
    from cifarctl.fsutil import check_target, open_regular, read_regular

    name = trial_name(params)
    if resume:
        args = ["train", "--resume", str(runs / name)] + [a for a in spec.extra if a != "--force"]
    else:
        problem = _clear_unstarted(runs / name)
        if problem:
            return 1, problem
        args = train_args(params, spec) + ["--runs-dir", str(runs), "--name", name]
    log = runs.parent / "logs" / f"{name}.txt"
    try:  # the log is written as a run's files are: no link followed, no FIFO or device opened
        check_target(log)
        fd = open_regular(log, os.O_WRONLY | os.O_CREAT)
        os.ftruncate(fd, 0)
        with os.fdopen(fd, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "cifarctl", *args], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
            code = proc.wait()
    except UsageError as exc:
        return 1, f"error: cannot write the trial's log: {exc}"
    except OSError as exc:
        return 1, f"error: cannot start the trial ({log}: {exc.strerror or exc})"
    text = (read_regular(log, 16 << 20) or b"").decode(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    error = next((ln for ln in reversed(lines) if ln.startswith(("error:", "stopped", "interrupted"))),
                 lines[-1] if lines else "")
    return code, error


def plan(study, spec: Spec, runs: Path) -> tuple[list[dict], list[dict]]:
    """(jobs to run as ``{"params"}`` (None: a new sample), results already there as
    ``{"params", "value"}``), after failing the trials a dead driver left running (a trial
    another live driver has claimed is left to it)."""
    from optuna.trial import TrialState

    out = runs.parent
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.params and claimed_elsewhere(out, trial_name(t.params)):
            continue  # a live driver works it
        try:
            study.tell(t.number, state=TrialState.FAIL)  # its driver died: the run folder says what is left
            study.set_user_attr(f"trial{t.number}_reason", "interrupted: the sweep driver stopped")
        except (ValueError, RuntimeError):  # ended by its driver meanwhile
            pass
    done = {setting_key(t.params): t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if spec.sampler == "grid":
        wanted = spec.grid()
    else:  # sampled: the interrupted ones first, then new samples up to --trials
        tried = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        interrupted = [t.params for t in tried if t.state == TrialState.FAIL and t.params
                       and setting_key(t.params) not in done
                       and run_state(runs / trial_name(t.params))[0] == "resumable"]
        wanted = [p for p in {setting_key(p): p for p in interrupted}.values()]
        finished = len([t for t in tried if t.state == TrialState.COMPLETE])
        wanted += [None] * max(0, (spec.trials or 0) - finished - len(wanted))
    jobs, results = [], []
    for params in wanted:
        if params is not None and setting_key(params) in done:
            results.append({"params": params, "value": done[setting_key(params)]})
        else:
            jobs.append({"params": params})
    return jobs, results


# ------------------------------------------------------------------------ the driver
def worker_envs(workers: int, gpus: list[int] | None) -> list[dict]:
    """One environment per worker: a GPU each (``CUDA_VISIBLE_DEVICES``), or on the CPU an
    equal share of the cores (``OMP_NUM_THREADS``). At most :data:`MAX_WORKERS`."""
    count = len(gpus) if gpus else workers
    if not 1 <= count <= MAX_WORKERS:
        raise UsageError(f"{count} workers: give 1 to {MAX_WORKERS} (--workers, or one per --gpus id)")
    base = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}
    if gpus:
        return [{**base, "CUDA_VISIBLE_DEVICES": str(g)} for g in gpus]
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return [{**base, "OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""} for _ in range(workers)]


def preflight(spec: Spec) -> None:
    """Load every recipe with the fixed ``--set`` values and each grid value (each range's
    ends) in turn, so a missing recipe, a mistyped key or a value the schema refuses stops
    the sweep before its first trial, with the recipe loader's own message."""
    from cifarctl.recipe.load import load_recipe, parse_override

    fixed = [spec.extra[i + 1] for i, a in enumerate(spec.extra[:-1]) if a == "--set"]
    for item in fixed:
        parse_override(item)
    trials = [[]]
    for a in spec.axes:
        values = list(a.values) if not a.is_range else (
            [int(a.low), int(a.high)] if a.integer else [a.low, a.high])
        trials += [[f"{a.key}={set_value(v)}"] for v in values]
    for recipe in spec.recipes:
        for sets in trials:
            load_recipe(recipe, fixed + sets)


def run_sweep(out: Path, spec: Spec, *, workers: int = 1, gpus: list[int] | None = None,
              storage: str | None = None) -> Iterator[dict]:
    """Run the sweep, yielding ``{"type": "plan", "jobs", "done", "total"}``, then
    ``{"type": "start", "name", "params", "resume"}`` and ``{"type": "end", "name",
    "params", "value", "ok", "error", "seconds"}`` per trial (``{"type": "elsewhere"}`` for
    one another driver is training), ``{"type": "note", "text"}`` (before the plan: what was
    repaired), and ``{"type": "done", "failed"}``. Trials run on ``workers`` threads, each waiting on its child process; an
    error in a worker stops the sweep and is raised here."""
    spec.check()
    envs = worker_envs(workers, gpus)
    preflight(spec)
    out = Path(out)
    notes: list[str] = []
    study = open_study(out, spec, storage, notes)  # says how to install Optuna when it is missing
    import optuna
    from optuna.trial import TrialState

    from cifarctl.runs import RunInUse

    runs = out / "runs"  # made by open_study
    jobs, results = plan(study, spec, runs)
    for note in notes:
        yield {"type": "note", "text": note}
    yield {"type": "plan", "jobs": len(jobs), "done": len(results), "total": len(jobs) + len(results),
           "results": results}
    lock = threading.Lock()
    events: list[dict] = []
    wake = threading.Condition(lock)
    pending = list(jobs)
    failed = 0
    crashed: list[BaseException] = []
    distributions = spec.distributions()

    def tell(trial, params: dict, value: float | None, reason: str) -> None:
        """Record a trial's end; when another driver ended it meanwhile, add the result as a
        trial of its own (a finished training is never dropped)."""
        try:
            if value is not None:
                study.tell(trial, value)
            else:
                study.tell(trial, state=TrialState.FAIL)
                study.set_user_attr(f"trial{trial.number}_reason", reason)
        except (ValueError, RuntimeError):
            if value is not None:
                study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))

    def one(job: dict, env: dict) -> None:
        nonlocal failed
        held = None
        with lock:
            if job["params"] is not None:
                name = trial_name(job["params"])
                try:
                    held = claim(out, name)
                except RunInUse:
                    events.append({"type": "elsewhere", "name": name, "params": job["params"]})
                    wake.notify_all()
                    return
                study.enqueue_trial(job["params"], skip_if_exists=False)
            trial = study.ask(distributions)
            params = dict(trial.params)
            name = trial_name(params)
            if held is None:
                try:
                    held = claim(out, name)
                except RunInUse:  # a new sample that another driver is training
                    study.tell(trial, state=TrialState.PRUNED)
                    study.set_user_attr(f"trial{trial.number}_reason", "the same setting ran in another driver")
                    events.append({"type": "elsewhere", "name": name, "params": params})
                    wake.notify_all()
                    return
        try:
            state = run_state(runs / name)[0]
            with lock:
                events.append({"type": "start", "name": name, "params": params, "resume": state == "resumable",
                               "reused": state == "completed"})
                wake.notify_all()
            t0 = time.monotonic()
            if state == "completed":  # trained to its end before (a driver died, or a repeated sample)
                code, error = 0, ""
            else:
                code, error = run_trial(params, spec, runs, env, state == "resumable")
            state, value = run_state(runs / name)
            ok = code == 0 and state == "completed" and value is not None
            with lock:
                tell(trial, params, value if ok else None, error or f"exit {code}")
                failed += not ok
                events.append({"type": "end", "name": name, "params": params, "value": value, "ok": ok,
                               "error": error or f"exit code {code}", "code": code,
                               "seconds": time.monotonic() - t0})
                wake.notify_all()
        finally:
            held.close()

    def worker(env: dict) -> None:
        while True:
            with lock:
                if not pending or crashed:
                    return
                job = pending.pop(0)
            try:
                one(job, env)
            except BaseException as exc:  # noqa: BLE001  raised in the driver's thread
                with lock:
                    crashed.append(exc)
                    wake.notify_all()
                return

    threads = [threading.Thread(target=worker, args=(env,), daemon=True) for env in envs]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) or events:
        with lock:
            if not events and not crashed:
                wake.wait(timeout=1.0)
            batch, events[:] = list(events), []
        yield from batch
        yield {"type": "tick"}  # a live view refreshes its table
    if crashed:
        raise crashed[0]
    yield {"type": "done", "failed": failed}
