"""Compare finished (or half-finished) run folders: read, group by set-up, sort, export.

Plain functions, no printing; ``cifarctl compare`` renders what they return. A run folder
is what ``cifarctl train`` writes (``recipe.yaml``, ``metrics.jsonl``, ``summary.json``,
...). Reading is forgiving: a bad line, a missing summary or a recipe from a newer
cifarctl adds a *mark* to the run instead of failing, and a folder with no metrics is
reported in ``skipped`` with its reason. Nothing here unpickles anything (checkpoints are
never opened) and YAML is read with the bounded loader of :mod:`cifarctl.yamlsafe` only.

Size (~560 lines): finding run folders, reading each (the marks), grouping and the three
exports are one path over one :class:`RunRecord`; ``report`` reuses all of it.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cifarctl.analysis.grouping import (
    finite_mean,
    finite_sum,
    group_by_setup,
    json_safe,
    labels,
    mean_std,
    seeds_differ,
    setup_of,
)
from cifarctl.errors import UsageError, did_you_mean
from cifarctl.fsutil import read_regular
from cifarctl.recipe.load import read_yaml, resolve_recipe_path
from cifarctl.recipe.schema import SCHEMA_VERSION
from cifarctl.recipe.targets import assignment_threshold, target_verdict

# Files whose presence makes a folder a run folder (rather than a folder of runs).
RUN_FILES = ("metrics.jsonl", "summary.json", "recipe.yaml", "env.json", "log.txt", "checkpoints")
SORT_KEYS = ("best", "final", "time")
EXPORT_FORMATS = ("csv", "json")  # machine-readable; markdown is the terminal view's (ui.compare_view)
# Statuses of a run that stopped for good; "running"/"interrupted"/"failed" runs are
# listed but left out of the per-recipe means.
FINISHED = ("completed", "diverged")
_STAMP = re.compile(r"-\d{8}-\d{6}$")

# summary.json's keys (as `train` writes them) for each RunRecord field read from it.
_SUMMARY_KEYS = {
    "recipe": "recipe", "model": "model", "params": "params", "epochs_planned": "epochs_planned",
    "best_acc": "best_test_acc", "best_epoch": "best_epoch", "final_acc": "final_test_acc",
    "total_seconds": "total_seconds", "status": "status", "seed": "seed",
}


@dataclass
class RunRecord:
    """One run folder, summarised; ``marks`` lists what was missing or odd about it."""

    name: str
    path: Path
    recipe: str
    model: str | None = None
    params: int | None = None
    epochs: int = 0
    epochs_planned: int | None = None
    best_acc: float | None = None
    final_acc: float | None = None
    best_epoch: int | None = None
    total_seconds: float | None = None
    images_per_s: float | None = None
    verdict: str = "-"
    status: str = "unknown"
    seed: int | None = None
    selected_on: str = "test"     # the split that chose the best epoch (data.val_split: "val")
    weights: str = "trained"      # "ema": the figures are the averaged weights' (recipe ema)
    stopped_early: str | None = None  # why early_stop ended the run
    best_val_acc: float | None = None  # the best validation accuracy (data.val_split)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    group: str | None = None      # its group's label (finished runs only)
    setup: dict[str, Any] = field(default_factory=dict, repr=False)  # cifarctl.analysis.grouping.setup_of
    # the folder's files as read, for a caller that needs more of them (``report``: no second reading)
    summary: dict[str, Any] = field(default_factory=dict, repr=False)  # summary.json ({}: absent, unparsable)
    recipe_doc: Any = field(default=None, repr=False)  # recipe.yaml parsed, not validated (None: unread, or empty)
    recipe_error: UsageError | None = field(default=None, repr=False)  # why recipe.yaml could not be read

    def row(self) -> dict[str, Any]:
        """The JSON-ready table row (no per-epoch metrics, no set-up, no files)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_IN_ROW}
        return d | {"path": str(self.path), "marks": list(self.marks)}


@dataclass
class RunGroup:
    """Finished runs of one set-up: the same resolved recipe but for the seed and settings
    that cannot change results (:mod:`cifarctl.analysis.grouping`). ``*_std`` is None for
    a lone run and for repeats of one seed: only a spread over seeds is shown."""

    recipe: str
    model: str | None
    epochs: int | None
    runs: list[RunRecord]
    label: str = ""               # the recipe name, or "name [key=value, ...]" when names repeat
    differs: dict[str, Any] = field(default_factory=dict)  # the settings the label names
    seeds_differ: bool = False
    best_mean: float | None = None
    best_std: float | None = None
    final_mean: float | None = None
    final_std: float | None = None
    time_mean: float | None = None
    time_std: float | None = None

    @property
    def n(self) -> int:
        """How many runs the means are over."""
        return len(self.runs)

    def row(self) -> dict[str, Any]:
        """The JSON-ready groups-table row."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "runs"}
        return d | {"n": self.n, "runs": [r.name for r in self.runs], "seeds": [r.seed for r in self.runs]}

    @property
    def over_seeds(self) -> str:
        """How the numbers were taken: "1 run", "mean of 3 seeds", "mean of 2 runs of seed 1"."""
        if self.n == 1:
            return "1 run"
        if self.seeds_differ:
            return f"mean of {self.n} seeds"
        seed = next((r.seed for r in self.runs if r.seed is not None), None)
        return f"mean of {self.n} runs of seed {seed}" if seed is not None else f"mean of {self.n} runs"


_NOT_IN_ROW = ("metrics", "setup", "summary", "recipe_doc", "recipe_error")


# ------------------------------------------------------------------------ reading
def _is_run_folder(p: Path) -> bool:
    return any((p / f).exists() for f in RUN_FILES)


def _missing_reason(p: Path) -> str:
    """Why ``p`` cannot be read as a folder although a name is there (or not)."""
    if os.path.islink(p):
        try:
            os.stat(p)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "a symbolic link loop"
            return f"a dangling symbolic link ({exc.strerror or exc})"
    return "does not exist"


def _candidates(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand parent folders into their children; keep order, drop duplicates."""
    out: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            skipped.append((p, _missing_reason(p)))
        elif not p.is_dir():
            checkpoint = p.suffix in (".pt", ".pth")
            skipped.append((p, "a checkpoint file, not a run folder (compare reads the run folder that "
                               "holds it, never a checkpoint)" if checkpoint else "not a folder"))
        elif _is_run_folder(p):
            out.append(p)
        elif (p / "sweep.json").is_file() and (p / "runs").is_dir():  # a `cifarctl sweep` folder: its runs
            out.extend(sorted(c for c in (p / "runs").iterdir() if c.is_dir() and not c.name.startswith(".")))
        else:
            try:
                children = sorted(c for c in p.iterdir() if not c.name.startswith("."))
            except OSError as exc:
                skipped.append((p, f"unreadable ({exc.strerror or exc})"))
                continue
            if not any(c.is_dir() for c in children):
                out.append(p)  # an empty folder: read it as a run, so it is skipped with a reason
                continue
            for c in children:
                if c.is_dir() and _is_lr_find_output(c):
                    continue  # `runs/*` reaches runs/lr-find/: range tests are not runs, and not news
                if c.is_dir():
                    out.append(c)
                else:
                    skipped.append((c, "not a folder" if c.exists() else _missing_reason(c)))
    return _unique(out, lambda p: p), _unique(skipped, lambda s: s[0])


def _is_lr_find_output(folder: Path) -> bool:
    """A ``cifarctl lr-find`` result folder (lr_find.json, no metrics.jsonl)."""
    return (folder / "lr_find.json").is_file() and not os.path.lexists(folder / "metrics.jsonl")


def _unique(items: list, path_of) -> list:
    kept: dict[str, Any] = {}
    for item in items:
        try:
            key = str(path_of(item).resolve())
        except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13)
            key = os.path.abspath(path_of(item))
        kept.setdefault(key, item)
    return list(kept.values())


# The most read of a run folder's metrics.jsonl or summary.json: far above what `train`
# writes (~300 bytes an epoch), and a bound on memory for a folder of unknown origin.
MAX_RUN_FILE = 16 << 20
_SHOWN_BAD_LINES = 3


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _read_bounded(path: Path, marks: list[str]) -> bytes | None:
    """The bytes of a run folder's file, or None with a mark (too large, not a regular file)."""
    raw = read_regular(path, MAX_RUN_FILE)
    if raw is None:
        marks.append(f"{path.name} is {_unreadable(path)}")
    return raw


def _unreadable(path: Path) -> str:
    """Why :func:`cifarctl.fsutil.read_regular` gave nothing for ``path``."""
    try:
        st = os.lstat(path)
    except OSError:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        reason = _missing_reason(path)
        return reason if reason != "does not exist" else "a symbolic link (not followed)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size > MAX_RUN_FILE:
        return f"{_size(st.st_size)}, over the {_size(MAX_RUN_FILE)} read"
    return "unreadable"


def _parse_line(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):  # bad JSON, a 4,300-digit number, deep nesting
        return None


def _read_metrics(path: Path, marks: list[str]) -> list[dict[str, Any]]:
    """Per-epoch dicts sorted by epoch; a later line for the same epoch wins (resumed runs).
    Bad lines are marked (the first few by number), so are rows with non-finite values
    (left out of every number)."""
    raw = _read_bounded(path, marks)
    if raw is None:
        return []
    lines = raw.split(b"\n")
    last_line = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    by_epoch: dict[int, dict[str, Any]] = {}
    bad: list[int] = []
    non_finite: dict[str, None] = {}
    non_finite_lines: list[int] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        obj = _parse_line(line)
        if not isinstance(obj, dict):
            bad.append(number)
            continue
        odd = [k for k, v in obj.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and _num(v) is None]  # inf, nan, 1e400, an integer past float's range
        if odd:
            non_finite.update(dict.fromkeys(odd))
            non_finite_lines.append(number)
        epoch = obj.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            epoch = len(by_epoch) + 1
            obj["epoch"] = epoch
        by_epoch[epoch] = obj
    for i in bad[:_SHOWN_BAD_LINES]:
        marks.append(f"{'truncated' if i == last_line else 'bad'} metrics line {i}")
    if len(bad) > _SHOWN_BAD_LINES:
        marks.append(f"{len(bad) - _SHOWN_BAD_LINES:,} more bad metrics lines")
    if non_finite_lines:
        where = ", ".join(map(str, non_finite_lines[:_SHOWN_BAD_LINES])) + (", ..." if len(non_finite_lines) > _SHOWN_BAD_LINES else "")
        marks.append(f"non-finite {', '.join(list(non_finite)[:4])} in metrics line{'s' if len(non_finite_lines) > 1 else ''} "
                     f"{where} (left out)")
    return [by_epoch[e] for e in sorted(by_epoch)]


def _read_summary(path: Path, marks: list[str]) -> dict[str, Any]:
    """summary.json as a dict ({} and a mark when absent, too large or unparsable)."""
    if not os.path.lexists(path):
        marks.append("no summary.json")
        return {}
    raw = _read_bounded(path, marks)
    if raw is None:
        return {}
    try:
        loaded = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        loaded = None
    if not isinstance(loaded, dict) or not loaded:
        marks.append("summary.json unparsable")
        return {}
    return loaded


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _num(v: Any) -> float | None:
    """``v`` as a finite float, or None (not a number, a boolean, inf/nan, an int past float's range)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _int(v: Any) -> int | None:
    f = _num(v)
    return int(f) if f is not None else None


def _series(metrics: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(m["epoch"], v) for m in metrics if (v := _num(m.get(key))) is not None]


def _read_recipe(path: Path, marks: list[str]) -> tuple[Any, UsageError | None]:
    """recipe.yaml parsed as :func:`~cifarctl.recipe.load.load_recipe` reads it (any YAML value), or
    None and the error ``load_recipe`` would raise (missing, not a regular file, unparsable)."""
    try:
        raw = read_yaml(resolve_recipe_path(str(path)))  # bounded: an alias bomb or deep nesting is one mark
    except UsageError as exc:
        marks.append("recipe.yaml unparsable" if os.path.lexists(path) else "no recipe.yaml")
        return None, exc
    if not isinstance(raw, dict):
        marks.append("recipe.yaml unparsable")
        return raw, None
    version = raw.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        marks.append(f"schema newer (v{version} > v{SCHEMA_VERSION})")
    return raw, None


def read_run(path: Path) -> RunRecord | str:
    """Read one run folder: a ``RunRecord``, or the reason it cannot be listed."""
    marks: list[str] = []
    mpath = path / "metrics.jsonl"
    metrics = _read_metrics(mpath, marks) if mpath.is_file() else []
    summary = _read_summary(path / "summary.json", marks)
    if not metrics:
        if not any(path.iterdir()):
            return "empty folder"
        if mpath.is_file():
            why = [m for m in marks if "metrics" in m]
            reason = "metrics.jsonl has no readable lines" + (f" ({'; '.join(why)})" if why else "")
        else:
            reason = "no metrics.jsonl" if not os.path.lexists(mpath) else f"metrics.jsonl is {_unreadable(mpath)}"
        if summary.get("status"):
            reason += f" (status {summary['status']}"
            reason += f": {summary['error']})" if summary.get("error") else ")"
        return reason
    recipe_doc, recipe_error = _read_recipe(path / "recipe.yaml", marks)
    recipe = recipe_doc if isinstance(recipe_doc, dict) else {}

    acc = _series(metrics, "test_acc")
    best_e, best_v = max(acc, key=lambda t: t[1]) if acc else (None, None)
    seconds = [v for _, v in _series(metrics, "seconds")]
    speed = [v for _, v in _series(metrics, "images_per_s")]
    got = {field: summary.get(key) for field, key in _SUMMARY_KEYS.items()}
    if isinstance(got["recipe"], dict):  # the whole resolved recipe instead of its name
        got["recipe"] = got["recipe"].get("name")
    rec = RunRecord(
        name=path.name,
        path=path,
        recipe=str(_first(got["recipe"], recipe.get("name"), _STAMP.sub("", path.name))),
        model=None if (m := _first(got["model"], recipe.get("model"))) is None else str(m),
        params=_int(got["params"]),
        epochs=metrics[-1]["epoch"],  # the epochs logged, whatever summary.json claims
        epochs_planned=_first(_int(got["epochs_planned"]), _int(recipe.get("epochs"))),
        best_acc=_first(_num(got["best_acc"]), best_v),
        best_epoch=_first(_int(got["best_epoch"]), best_e),
        final_acc=_first(_num(got["final_acc"]), acc[-1][1] if acc else None),
        total_seconds=_first(_num(got["total_seconds"]), finite_sum(seconds)),
        images_per_s=finite_mean(speed),
        status=str(got["status"] or "unknown"),
        seed=_first(_int(got["seed"]), _int(recipe.get("seed"))),
        selected_on="val" if summary.get("selected_on") == "val" else "test",
        weights="ema" if summary.get("weights") == "ema" else "trained",
        stopped_early=str(summary["stopped_early"])[:200] if summary.get("stopped_early") else None,
        best_val_acc=_num(summary.get("best_val_acc")),
        metrics=metrics,
        marks=marks,
        summary=summary,
        recipe_doc=recipe_doc,
        recipe_error=recipe_error,
    )

    rec.setup = setup_of(recipe, lr_auto=(path / "lr_find.json").is_file(), fallback={
        "name": rec.recipe, "model": rec.model, "epochs": rec.epochs_planned})
    if rec.status not in ("completed", "unknown"):
        marks.insert(0, rec.status)
    if summary.get("rules_broken"):
        marks.append("broke its rules (--break-rules)")
    if summary.get("error"):
        marks.append(f"error: {str(summary['error']).splitlines()[0][:120]}")
    if rec.weights == "ema":
        decay = _num((summary.get("ema") or {}).get("decay"))
        marks.append("EMA weights" + (f" (decay {decay:g})" if decay is not None else ""))
    if rec.stopped_early:
        marks.append(rec.stopped_early)
    target = summary.get("target")
    if rec.status == "running":
        rec.verdict = "-"
    elif isinstance(target, dict) and isinstance(target.get("passed"), bool) and not _judged_without_assignment(
            target, recipe):
        rec.verdict = "PASS" if target["passed"] else "FAIL"
    elif (not summary or isinstance(target, dict)) and rec.epochs_planned is not None and rec.epochs >= rec.epochs_planned:
        verdict = target_verdict(  # as `train` judges it
            recipe.get("target"), best_acc=rec.best_acc, params=rec.params, epochs=rec.epochs,
            assignment=assignment_threshold(recipe))
        rec.verdict = ("PASS" if verdict["passed"] else "FAIL") if verdict["checks"] else "-"
    return rec


def _judged_without_assignment(target: dict, recipe: dict) -> bool:
    """A verdict stored by an older cifarctl, which held the run to the seed's figure only
    although its recipe has an assignment threshold: judged again, as ``train`` judges now."""
    checks = target.get("checks")
    return (assignment_threshold(recipe) is not None and isinstance(checks, list)
            and not any(isinstance(c, dict) and c.get("name") == "assignment_acc" for c in checks))


def collect_runs(paths: list[Path]) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """Read run folders, or parent folders whose direct children are run folders.

    Returns ``(runs, skipped)``; ``skipped`` holds ``(path, reason)`` for every folder
    that could not be listed (no metrics, not a folder, missing). Never raises for a bad
    folder; duplicates (the same folder reached twice) are read once.
    """
    folders, skipped = _candidates(paths)
    runs = []
    for p in folders:
        try:
            rec = read_run(p)
        except OSError as exc:  # permissions, a folder vanishing mid-read
            rec = f"unreadable ({exc.strerror or exc})"
        except Exception as exc:  # noqa: BLE001  a hostile folder is one line, the rest are compared
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            rec = f"unreadable ({type(exc).__name__}{': ' + first if first else ''})"
        if isinstance(rec, str):
            skipped.append((p, rec))
        else:
            runs.append(rec)
    return runs, skipped


# ---------------------------------------------------------------------- grouping
def is_finished(run: RunRecord) -> bool:
    """True for a run that stopped for good (completed, diverged, or all epochs logged)."""
    if run.status in FINISHED:
        return True
    return run.status == "unknown" and run.epochs_planned is not None and run.epochs >= run.epochs_planned


def group_runs(runs: list[RunRecord]) -> list[RunGroup]:
    """Group finished runs by set-up (:mod:`cifarctl.analysis.grouping`): the whole
    resolved recipe but the seed and result-neutral settings. Each group has its label
    (sets ``run.group`` too), the mean of best/final accuracy and time, and their sample
    standard deviation (n - 1) only when its runs' seeds differ.

    Running, interrupted and failed runs are left out so they do not drag the means down.
    """
    finished = [r for r in runs if is_finished(r)]
    buckets = group_by_setup(finished, lambda r: r.setup)
    names, differs = labels([b[0].recipe for b in buckets], [b[0].setup for b in buckets])
    groups = []
    for members, label, diff in zip(buckets, names, differs):
        first = members[0]
        g = RunGroup(recipe=first.recipe, model=first.model, epochs=first.epochs_planned, runs=members,
                     label=label, differs=diff, seeds_differ=seeds_differ([r.seed for r in members]))
        g.best_mean, g.best_std = mean_std([r.best_acc for r in members], g.seeds_differ)
        g.final_mean, g.final_std = mean_std([r.final_acc for r in members], g.seeds_differ)
        g.time_mean, g.time_std = mean_std([r.total_seconds for r in members], g.seeds_differ)
        for r in members:
            r.group = label
        groups.append(g)
    return groups


def best_setting(groups: list[RunGroup]) -> tuple[RunGroup, float, str] | None:
    """(group, its mean best accuracy, "validation"/"test") of the best set-up, counting only
    groups whose every run completed (a diverged or failed run disqualifies its set-up), on
    the split that chose their checkpoints: validation when all had one, else test."""
    scored = []
    for g in groups:
        if not g.runs or any(r.status != "completed" for r in g.runs):
            continue
        on_val = all(r.selected_on == "val" and r.best_val_acc is not None for r in g.runs)
        mean = mean_std([r.best_val_acc if on_val else r.best_acc for r in g.runs], False)[0]
        if mean is not None:
            scored.append((g, mean, "validation" if on_val else "test"))
    return max(scored, key=lambda t: t[1]) if scored else None


def sort_runs(runs: list[RunRecord], key: str = "best") -> list[RunRecord]:
    """Best/final accuracy high to low, or time short to long; unknown values last."""
    if key not in SORT_KEYS:

        raise UsageError(f"unknown sort key {key!r}{did_you_mean(key, SORT_KEYS)}; choose one of {', '.join(SORT_KEYS)}")
    attr, sign = {"best": ("best_acc", -1), "final": ("final_acc", -1), "time": ("total_seconds", 1)}[key]
    return sorted(runs, key=lambda r: (getattr(r, attr) is None, sign * (getattr(r, attr) or 0)))


# ------------------------------------------------------------------------ charts
def metric_names(runs: list[RunRecord]) -> list[str]:
    """Every key with a numeric value in some run's metrics (besides ``epoch``)."""
    names: dict[str, None] = {}
    for r in runs:
        for m in r.metrics:
            for k, v in m.items():
                if k != "epoch" and _num(v) is not None:
                    names.setdefault(k, None)
    return list(names)


def curves(
    runs: list[RunRecord], groups: list[RunGroup], metric: str, by_run: bool = False
) -> list[tuple[str, list[int], list[float]]]:
    """``(label, epochs, values)`` per line: one per run, or the per-epoch mean of each
    group of two runs or more (unless ``by_run``); runs outside such groups get their own."""
    out = []
    grouped: set[int] = set()
    if not by_run:
        for g in groups:
            if g.n < 2:
                continue
            grouped.update(id(r) for r in g.runs)
            per_epoch: dict[int, list[float]] = {}
            for r in g.runs:
                for e, v in _series(r.metrics, metric):
                    per_epoch.setdefault(e, []).append(v)
            if per_epoch:
                xs = sorted(per_epoch)
                means = [(e, finite_mean(per_epoch[e])) for e in xs]
                means = [(e, m) for e, m in means if m is not None]
                if means:
                    out.append((f"{g.label} ({g.over_seeds})", [e for e, _ in means], [m for _, m in means]))
    for r in runs:
        if id(r) in grouped:
            continue
        pts = _series(r.metrics, metric)
        if pts:
            out.append((r.name, [e for e, _ in pts], [v for _, v in pts]))
    return out


# ------------------------------------------------------------------------ export
_COLUMNS = ("name", "recipe", "model", "seed", "params", "epochs", "epochs_planned", "best_acc",
            "final_acc", "best_epoch", "total_seconds", "images_per_s", "verdict", "status", "marks")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".")
    text = "; ".join(map(str, v)) if isinstance(v, list) else str(v)
    if isinstance(v, (int, float)):
        return text
    # a spreadsheet runs a cell that starts with one of these as a formula: keep it text
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export(
    runs: list[RunRecord], groups: list[RunGroup], fmt: str,
    skipped: list[tuple[Path, str]] | None = None,
) -> str:
    """The runs (and groups) as ``csv`` (one row per run, with its group's mean ± std)
    or ``json`` ({runs, groups, skipped}), every value in full."""
    if fmt == "json":
        doc = {"runs": [r.row() for r in runs], "groups": [g.row() for g in groups],
               "skipped": [{"path": str(p), "reason": why} for p, why in skipped or []]}
        # strict JSON: a non-finite number (from a recipe.yaml's .inf, say) is null, never Infinity
        return json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"
    if fmt == "csv":
        of = {id(r): g for g in groups for r in g.runs}
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        extra = ("group", "group_n", "group_best_mean", "group_best_std", "group_final_mean", "group_final_std")
        w.writerow(_COLUMNS + extra)
        for r in runs:
            row = r.row()
            g = of.get(id(r))
            tail = ([g.label, g.n, g.best_mean, g.best_std, g.final_mean, g.final_std] if g
                    else [None] * len(extra))
            w.writerow([_cell(row[c]) for c in _COLUMNS] + [_cell(v) for v in tail])
        return buf.getvalue()

    raise UsageError(f"unknown export format {fmt!r}{did_you_mean(fmt, EXPORT_FORMATS)}; choose one of {', '.join(EXPORT_FORMATS)}")
