"""A sweep's store: its folder (``--out``), the Optuna study in ``OUT/study.journal`` or a
``--storage`` database, and the claims by which several drivers share the trials. Every
file is checked as a run's files are (no link followed, no FIFO or device opened); every
problem is one line saying how to go on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from cifarctl.errors import UsageError

if TYPE_CHECKING:
    from cifarctl.training.sweep import Spec

STUDY = "cifarctl-sweep"  # the study of a sweep folder made before names were derived (sweep.json has no "study")
CLAIMS = ".claims"    # OUT/.claims/<trial>/.lock: held by the driver working that trial
SPEC_FILE = "sweep.json"
INSTALL = 'pip install -e ".[sweep]"  (or: pip install optuna)'


def _is_real_dir(path: Path) -> bool:
    import stat

    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def claim(out: Path, name: str):
    """The driver's claim on a trial: a :class:`cifarctl.runs.RunLock` on
    ``OUT/.claims/<name>``, held while it trains and records the trial (the kernel drops it
    when the driver dies, however it dies); :class:`cifarctl.runs.RunInUse` when another
    driver holds it."""
    from cifarctl.runs import RunLock

    folder = out / CLAIMS / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from cifarctl.fsutil import write_error

        raise write_error(folder, exc) from None
    if not _is_real_dir(out / CLAIMS) or not _is_real_dir(folder):
        raise UsageError(f"{folder} is not a folder (a link is in the way): remove it and run again")
    return RunLock(folder)


def claimed_elsewhere(out: Path, name: str) -> bool:
    """True when another live driver holds the trial ``name``."""
    from cifarctl.runs import RunInUse

    try:
        claim(out, name).close()
    except RunInUse:
        return True
    return False


def study_name(out: Path, spec: Spec) -> str:
    """The study of a sweep: its folder's name and a hash of its setting, so sweeps sharing a
    database never meet unless they are the same sweep."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(out).resolve().name)[:40]
    digest = hashlib.sha256(json.dumps(spec.to_json(), sort_keys=True).encode()).hexdigest()[:12]
    return f"cifarctl-sweep-{readable}-{digest}"


def check_out(out: Path) -> None:
    """``--out`` is a sweep folder or a new one: not a file, FIFO or device, not a link, and
    not a run folder (whose runs compare and report would then mix up)."""
    import stat

    try:
        mode = os.lstat(out).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISLNK(mode):
        raise UsageError(f"--out {out} is a symbolic link: give the folder it points to, or a new folder")
    if not stat.S_ISDIR(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a file")
        raise UsageError(f"--out {out} is {kind}, not a folder: give a new folder for the sweep")
    if any(os.path.lexists(out / f) for f in ("run.json", "summary.json", "metrics.jsonl", "checkpoints")):
        raise UsageError(f"--out {out} is a run folder (of `cifarctl train`): give a new folder for the sweep")
    for sub in ("runs", "logs", CLAIMS):
        if os.path.lexists(out / sub) and not _is_real_dir(out / sub):
            raise UsageError(f"{out / sub} is not a folder (a link or a file is in the way): move it aside")


def check_journal(path: Path) -> str:
    """Make ``OUT/study.journal`` safe for Optuna to read: a regular file (not a link, FIFO,
    device or folder) of JSON lines. A torn last line (a writer killed mid-line) is cut off, as
    Optuna's reader itself skips it; a damaged line before it is an error saying how to go on.
    Returns a notice when a line was cut, else ''."""
    import stat

    from cifarctl.fsutil import open_regular

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return ""
    fix = (f"move it aside (mv {path} {path}.bad) and run the same command: finished trials are "
           "read back from their run folders")
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise UsageError(f"{path} is {kind}: {fix}")
    try:
        fd = open_regular(path, os.O_RDWR)
        with os.fdopen(fd, "rb+") as f:
            bad = _first_bad_line(f)
            if bad is None:
                return ""
            if bad[1] != "no end of line" or bad[2] == 0 or bad[0] != bad[3]:  # a torn write lacks only its end
                raise UsageError(f"{path}: line {bad[0]} is damaged ({bad[1]}): {fix}")
            f.truncate(bad[2])
    except OSError as exc:
        raise UsageError(f"{path}: cannot read or repair it ({exc.strerror or exc}): {fix}") from None
    return f"{path}: cut its torn last line {bad[0]} (a writer stopped mid-line)"


def _first_bad_line(f) -> tuple[int, str, int, int] | None:
    """(its number, why, its offset, the number of lines) of the first line of a journal
    that is not a whole JSON object, or None."""
    offset, bad, number = 0, None, 0
    for number, line in enumerate(f, start=1):
        if bad is None:
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("no end of line")
                if not isinstance(json.loads(line.decode("utf-8")), dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                bad = (number, str(exc).splitlines()[0][:80], offset)
        offset += len(line)
    return None if bad is None else (*bad, number)


def _storage_problem(url: str) -> str | None:
    """Why ``--storage`` is not an Optuna database URL, or None."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if not url.strip():
        return "is empty"
    if not m:
        return "is not a URL (dialect://...)"
    dialect = m.group(1).split("+")[0].lower()
    if dialect in ("http", "https", "file", "ftp"):
        return f"is a {dialect}:// address, not a database"
    return None


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)[:200]


def open_storage(out: Path, storage: str | None, notes: list[str] | None = None):
    """The study's storage: ``OUT/study.journal`` (checked first), or a database URL; any
    problem is one line."""
    from cifarctl.safetext import shown

    if storage is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        note = check_journal(out / "study.journal")
        if note and notes is not None:
            notes.append(note)
        return JournalStorage(JournalFileBackend(str(out / "study.journal")))
    problem = _storage_problem(storage)
    if problem:
        raise UsageError(f"--storage {shown(_redact(storage))!r} {problem}: give sqlite:///PATH.db, "
                         "postgresql://USER@HOST/DB or mysql://..., or leave it out for OUT/study.journal")
    from optuna.storages import RDBStorage

    try:
        return RDBStorage(storage)
    except Exception as exc:  # noqa: BLE001  sqlalchemy's and the drivers' errors are many
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        hint = ("the database driver is not installed (pip install it)" if isinstance(exc, ImportError)
                else "check the dialect, the path's folder and its permissions")
        raise UsageError(f"--storage {shown(_redact(storage))!r}: cannot open it ({type(exc).__name__}: "
                         f"{shown(first)}): {hint}") from None


def open_study(out: Path, spec: Spec, storage: str | None, notes: list[str] | None = None):
    """The sweep's Optuna study, created or reopened; a different spec is refused, and so is
    a study of the same name that is not this sweep's (left untouched). What was repaired on
    the way (a torn journal line) is added to ``notes``."""
    try:
        import optuna
    except ImportError:
        raise UsageError(f"cifarctl sweep needs Optuna: {INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from cifarctl.fsutil import write_atomic, write_error
    from cifarctl.runs import read_json

    check_out(out)
    mine = spec.to_json()
    saved = read_json(out / SPEC_FILE) if os.path.lexists(out / SPEC_FILE) else None
    if isinstance(saved, dict):
        stored = {k: v for k, v in saved.items() if k != "study"}
        if stored != json.loads(json.dumps(mine)):
            raise UsageError(f"{out} holds a sweep of another grid ({_diff(stored, mine)}): "
                             "run the same command to continue it, or give a new --out")
    name = (saved.get("study") or STUDY) if isinstance(saved, dict) else study_name(out, spec)
    sampler = {"grid": None, "random": optuna.samplers.RandomSampler(seed=0),
               "tpe": optuna.samplers.TPESampler(seed=0)}[spec.sampler]
    text = json.dumps(mine, sort_keys=True)
    where = "--storage" if storage else out / "study.journal"
    # a database is opened, and its study checked, before any folder is made
    backend = open_storage(out, storage, notes) if storage is not None else None
    study = _load_study(optuna, name, backend, sampler, text, where) if backend is not None else None
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "runs").mkdir(exist_ok=True)
        (out / "logs").mkdir(exist_ok=True)
    except OSError as exc:
        raise write_error(out, exc, user_path=True) from None
    check_out(out)  # made by another process meanwhile: still plain folders
    if backend is None:
        backend = open_storage(out, storage, notes)
        study = _load_study(optuna, name, backend, sampler, text, where)
    if study is None:
        try:
            study = optuna.create_study(study_name=name, storage=backend, sampler=sampler, direction="maximize")
            study.set_user_attr("spec", text)
        except optuna.exceptions.DuplicatedStudyError:  # another driver made it meanwhile
            study = _load_study(optuna, name, backend, sampler, text, where)
    if not isinstance(saved, dict):
        write_atomic(out / SPEC_FILE, json.dumps({**mine, "study": name}, indent=2) + "\n", user_path=True)
    return study


def _load_study(optuna, name: str, backend, sampler, text: str, where):
    """The study ``name`` when it is this sweep's, None when there is none; one of another
    sweep, or not a sweep's, is refused and left untouched."""
    try:
        study = optuna.load_study(study_name=name, storage=backend, sampler=sampler)
    except KeyError:
        return None
    stored = study.user_attrs.get("spec")
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    if stored is None and maximize and not study.get_trials(deepcopy=False):
        study.set_user_attr("spec", text)  # another driver is creating it this instant
        stored = text
    if stored != text or not maximize:
        what = "another sweep's" if stored else "not a cifarctl sweep's"
        raise UsageError(f"study {name!r} in {where} is {what} (other parameters or direction); left "
                         "untouched: give a new --out")
    return study


def _diff(a: dict, b: dict) -> str:
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:3])
