"""Many training runs driven by Optuna: grids over recipe values and seeds, or sampled
trials, resumable, one run folder per trial.

``cifarctl sweep RECIPE... --out DIR`` keeps the study in ``DIR/study.journal`` (Optuna's
journal file storage: no server, several processes or machines sharing a file system may
work one study; ``storage`` takes a database URL instead) and every trial's run folder in
``DIR/runs/<name>``, named from its values, so each is an ordinary run folder. A trial is
one ``cifarctl train`` process (``python -m cifarctl``), so a crash or a kill takes one
trial, never the driver's bookkeeping.

Resuming: the same command again keeps the finished trials, resumes an interrupted one
from its checkpoint (``train --resume``), records one whose training finished after the
driver died, and trains nothing twice; a different grid in the same folder is refused.

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

STUDY = "cifarctl-sweep"
SPEC_FILE = "sweep.json"
INSTALL = 'pip install -e ".[sweep]"  (or: pip install optuna)'
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
        return Axis(key, low=low, high=high, log=kind == "log", integer=kind == "int")
    values = tuple(_value(v.strip()) for v in rest.split(","))
    if len(set(map(repr, values))) != len(values):
        raise UsageError(f"--set {text!r}: a value is given twice")
    return Axis(key, values=values)


def parse_seeds(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"--seeds {text!r}: expected integers, e.g. --seeds 1,2,3") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: expected distinct integers >= 0")
    return seeds


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
def trial_name(params: dict) -> str:
    """The run folder name of a trial: its values, readable and unique (a hash when long)."""
    parts = [str(params["recipe"])]
    parts += [f"{k.split('.')[-1]}={_short(v)}" for k, v in params.items() if k not in ("recipe", "seed")]
    if "seed" in params:
        parts.append(f"seed{params['seed']}")
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", "-".join(parts)).lstrip(".")
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return name if len(name) <= 80 else f"{name[:70]}-{digest}"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def train_args(params: dict, spec: Spec) -> list[str]:
    """The ``cifarctl train`` arguments of a fresh trial."""
    args = ["train", str(params["recipe"])]
    for k, v in params.items():
        if k not in ("recipe", "seed"):
            args += ["--set", f"{k}={json.dumps(v) if isinstance(v, str) and v != v.strip() else v}"]
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


def run_trial(params: dict, spec: Spec, runs: Path, env: dict, resume: bool) -> tuple[int, str]:
    """Train one trial to its end in a child process: (exit code, its last error line)."""
    name = trial_name(params)
    if resume:
        args = ["train", "--resume", str(runs / name)] + [a for a in spec.extra if a != "--force"]
    else:
        stale = runs / name
        if stale.exists():  # a folder left before its first checkpoint: start again
            import shutil

            shutil.rmtree(stale, ignore_errors=True)
        args = train_args(params, spec) + ["--runs-dir", str(runs), "--name", name]
    log = runs.parent / "logs" / f"{name}.txt"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "cifarctl", *args], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
            code = proc.wait()
    except OSError as exc:
        return 1, f"error: cannot start the trial ({log}: {exc.strerror or exc})"
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    error = next((ln for ln in reversed(lines) if ln.startswith(("error:", "stopped", "interrupted"))),
                 lines[-1] if lines else "")
    return code, error


# ------------------------------------------------------------------------ the study
def open_study(out: Path, spec: Spec, storage: str | None):
    """The sweep's Optuna study, created or reopened; a different spec is refused."""
    try:
        import optuna
    except ImportError:
        raise UsageError(f"cifarctl sweep needs Optuna: {INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from cifarctl.fsutil import write_error

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "runs").mkdir(exist_ok=True)
    except OSError as exc:
        raise write_error(out, exc, user_path=True) from None
    if storage is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    sampler = {"grid": None, "random": optuna.samplers.RandomSampler(seed=0),
               "tpe": optuna.samplers.TPESampler(seed=0)}[spec.sampler]
    study = optuna.create_study(study_name=STUDY, storage=storage, sampler=sampler, direction="maximize",
                                load_if_exists=True)
    mine = json.dumps(spec.to_json(), sort_keys=True)
    stored = study.user_attrs.get("spec")
    if stored is None:
        study.set_user_attr("spec", mine)
        from cifarctl.fsutil import write_atomic

        write_atomic(out / SPEC_FILE, json.dumps(spec.to_json(), indent=2) + "\n")
    elif stored != mine:
        raise UsageError(f"{out} holds a sweep of another grid ({_diff(json.loads(stored), spec.to_json())}): "
                         "run the same command to continue it, or give a new --out")
    return study


def _diff(a: dict, b: dict) -> str:
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:3])


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def plan(study, spec: Spec, runs: Path) -> tuple[list[dict], list[dict]]:
    """(jobs to run as ``{"params", "resume"}``, results already there as ``{"params",
    "value"}``), after failing the trials a dead driver left running."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)  # its driver died: the run folder says what is left
        study.set_user_attr(f"trial{t.number}_reason", "interrupted: the sweep driver stopped")
    done = {_key(t.params): t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if spec.sampler == "grid":
        wanted = spec.grid()
    else:  # sampled: the interrupted ones first, then new samples up to --trials
        tried = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        interrupted = [t.params for t in tried if t.state == TrialState.FAIL
                       and run_state(runs / trial_name(t.params))[0] == "resumable"]
        wanted = [p for p in {_key(p): p for p in interrupted}.values()]
        finished = len([t for t in tried if t.state == TrialState.COMPLETE])
        wanted += [None] * max(0, (spec.trials or 0) - finished - len(wanted))
    jobs, results = [], []
    for params in wanted:
        if params is not None and _key(params) in done:
            results.append({"params": params, "value": done[_key(params)]})
            continue
        state = run_state(runs / trial_name(params))[0] if params is not None else "new"
        jobs.append({"params": params, "resume": state == "resumable", "completed": state == "completed"})
    return jobs, results


# ------------------------------------------------------------------------ the driver
def worker_envs(workers: int, gpus: list[int] | None) -> list[dict]:
    """One environment per worker: a GPU each (``CUDA_VISIBLE_DEVICES``), or on the CPU an
    equal share of the cores (``OMP_NUM_THREADS``)."""
    base = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}
    if gpus:
        return [{**base, "CUDA_VISIBLE_DEVICES": str(g)} for g in gpus[:workers]]
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return [{**base, "OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""} for _ in range(workers)]


def run_sweep(out: Path, spec: Spec, *, workers: int = 1, gpus: list[int] | None = None,
              storage: str | None = None) -> Iterator[dict]:
    """Run the sweep, yielding ``{"type": "plan", "jobs", "done", "total"}``, then
    ``{"type": "start", "name", "params", "resume"}`` and ``{"type": "end", "name",
    "params", "value", "ok", "error", "seconds"}`` per trial, and ``{"type": "done",
    "failed"}``. Trials run on ``workers`` threads, each waiting on its child process."""
    spec.check()
    study = open_study(Path(out), spec, storage)  # says how to install Optuna when it is missing
    from optuna.trial import TrialState

    runs = out / "runs"  # made by open_study
    jobs, results = plan(study, spec, runs)
    yield {"type": "plan", "jobs": len(jobs), "done": len(results), "total": len(jobs) + len(results),
           "results": results}
    lock = threading.Lock()
    events: list[dict] = []
    wake = threading.Condition(lock)
    pending = list(jobs)
    failed = 0
    distributions = spec.distributions()
    envs = worker_envs(workers, gpus)

    def worker(env: dict) -> None:
        nonlocal failed
        while True:
            with lock:
                if not pending:
                    return
                job = pending.pop(0)
                if job["params"] is not None:
                    study.enqueue_trial(job["params"], skip_if_exists=False)
                trial = study.ask(distributions)
                params = dict(trial.params)
                name = trial_name(params)
                events.append({"type": "start", "name": name, "params": params, "resume": job["resume"]})
                wake.notify_all()
            t0 = time.monotonic()
            if job.get("completed"):  # trained to its end after the last driver died: only record it
                code, error = 0, ""
            else:
                code, error = run_trial(params, spec, runs, env, job["resume"])
            state, value = run_state(runs / name)
            ok = code == 0 and state == "completed" and value is not None
            with lock:
                if ok:
                    study.tell(trial, value)
                else:
                    study.tell(trial, state=TrialState.FAIL)
                    study.set_user_attr(f"trial{trial.number}_reason", error or f"exit {code}")
                    failed += 1
                events.append({"type": "end", "name": name, "params": params, "value": value, "ok": ok,
                               "error": error or f"exit code {code}", "code": code,
                               "seconds": time.monotonic() - t0})
                wake.notify_all()

    threads = [threading.Thread(target=worker, args=(env,), daemon=True) for env in envs]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) or events:
        with lock:
            if not events:
                wake.wait(timeout=1.0)
            batch, events[:] = list(events), []
        yield from batch
        yield {"type": "tick"}  # a live view refreshes its table
    yield {"type": "done", "failed": failed}
