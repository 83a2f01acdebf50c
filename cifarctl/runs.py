"""Run folders: naming, locks, the files a run appends and rewrites (checkpoint files are
:mod:`cifarctl.checkpoints`).

A run folder ``runs/<recipe>-<YYYYmmdd-HHMMSS>/`` holds::

    recipe.yaml      the resolved recipe
    env.json         versions, device, git revision, command line, host, start time
    metrics.jsonl    one JSON object per epoch (flushed and fsynced line by line): epoch,
                     train_loss/acc, test_loss/acc, lr, seconds, train_seconds, images_per_s
    summary.json     status, best/final accuracy, target verdict (atomic, every epoch)
    log.txt          the plain per-epoch lines (and a traceback if the run failed)
    metrics.csv      the same rows as CSV;  tensorboard/  event files (with the logs extra)
    curves.png       loss, accuracy and lr by epoch, titled with the run's name (atomic; at most
                     every 30 s and when the run ends or stops: cifarctl.training.curves)
    run.json         the run's id (and its data's content key), written when the folder is made
    .lock            locked (flock) by the process writing the folder, which wrote its pid there
    checkpoints/last.pt, checkpoints/best.pt

and, once ``eval``, ``misclassified`` or ``report`` looked at it::

    eval.json                   the latest evaluation (accuracy, per class, confusion matrix)
    eval-predictions-<split>.npz  that pass's per-image predictions, read back by the next
                                one of the same checkpoint and data (cifarctl.analysis.inference)

Every checkpoint carries the run id and the data key, so ``--resume`` can prove that the
checkpoint belongs to this folder and is trained on the same data (:func:`claim_run`).

Every file that is rewritten is written to a temp file in the same folder, fsynced and
``os.replace``d, so a crash leaves either the old or the new file, never half of one (a
killed process may leave a ``.<name>.tmp-<pid>`` file: the next run in the folder removes
it). A file that cannot be written (disk full) is a :class:`~cifarctl.errors.WriteError`
naming it. Checkpoints are only ever read with ``torch.load(weights_only=True)``, after
checking the zip checksums, so a damaged file is an error rather than wrong weights.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import socket
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from cifarctl import __version__, yamlsafe
from cifarctl.checkpoints import CHECKPOINT_DIR, checkpoint_path, save_checkpoint
from cifarctl.errors import RecipeError, UsageError, WriteError
from cifarctl.fsutil import FULL_ERRNOS as _FULL
from cifarctl.fsutil import name_problem, open_regular, pid_alive, read_regular, remove_temps, write_atomic, write_error
from cifarctl.recipe.load import recipe_differences

# ------------------------------------------------------------------------ folders
# errnos that mean the path itself is wrong (the user's to fix), not the machine's state
_BAD_PATH = (errno.ENAMETOOLONG, errno.ENOTDIR, errno.EEXIST, errno.EINVAL, errno.ELOOP, errno.EILSEQ)


def path_error(what: str, path: Path, exc: OSError, fix: str = ""):
    """One line for a folder or file that cannot be made: UsageError (2) when the path is bad
    (too long, a file in the way, a link loop), WriteError (1) when the disk or the
    permissions are (read-only, full, not allowed)."""
    reason = exc.strerror or str(exc)
    if exc.errno in _FULL:
        reason += ": the disk is full or over a quota"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason += ": choose a writable folder (--runs-dir)"
    line = f"cannot create {what} {path} ({reason}){fix}"
    return UsageError(line) if exc.errno in _BAD_PATH else WriteError(line)


def create_run_dir(runs_dir: str | os.PathLike, recipe_name: str, name: str | None = None, *,
                   now: datetime | None = None, checkpoints: bool = True) -> Path:
    """A new, empty ``<runs_dir>/<name or recipe-YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... if taken)
    holding ``checkpoints/`` and ``run.json`` (a new run id), or nothing when ``checkpoints``
    is False (an lr-find folder).

    ``os.mkdir`` is atomic: two processes starting in the same second get two folders. The
    name is a single safe folder name (``--name`` and the recipe name alike); any failure to
    create the folder is one line naming it (exit 2 for a bad path, 1 otherwise).
    """
    for option, value in (("--name", name), ("recipe name", recipe_name)):
        bad = name_problem(value) if value is not None else None
        if bad:
            raise UsageError(f"{option} {value[:60]!r}: {bad}: expected one plain folder name")
    parent = Path(runs_dir)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file where the runs folder should be
        raise UsageError(f"cannot create the runs folder {parent}: {exc.strerror or exc} (a file is in "
                         "the way): pass --runs-dir FOLDER") from None
    except OSError as exc:
        raise path_error("the runs folder", parent, exc) from None
    base = name or f"{recipe_name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 10_000):
        path = parent / (base if i == 1 else f"{base}-{i}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except OSError as exc:
            raise path_error("the run folder", path, exc) from None
        if not checkpoints:  # an lr-find folder: no checkpoints, nothing to resume
            return path
        try:
            (path / CHECKPOINT_DIR).mkdir()
            write_json(path / RUN_FILE, {"run_id": new_run_id(),
                                         "created": datetime.now().astimezone().isoformat(timespec="seconds")})
        except WriteError:
            raise
        except OSError as exc:
            raise path_error("the run folder", path / CHECKPOINT_DIR, exc) from None
        return path
    raise UsageError(f"cannot create a run folder under {parent}: {base} .. {base}-9999 all exist")


# ------------------------------------------------------------------------ run identity
RUN_FILE = "run.json"
LOCK_FILE = ".lock"


def new_run_id() -> str:
    return uuid.uuid4().hex


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """``run.json`` of a run folder ({} when absent or unreadable: a folder of an older cifarctl)."""
    info = read_json(Path(run_dir) / RUN_FILE)
    return info if isinstance(info, dict) else {}


def run_id_of(run_dir: str | os.PathLike) -> str | None:
    rid = read_run_info(run_dir).get("run_id")
    return rid if isinstance(rid, str) and rid else None


_HELD_LOCK_FDS: set[int] = set()


def _drop_inherited_locks() -> None:
    """In a forked child (DataLoader or decode workers): close the inherited descriptors of
    the parent's run locks. A flock belongs to the open file, which a fork shares, so a
    worker that outlives a killed trainer would otherwise keep its run folder locked; closing
    the child's copy leaves the parent's lock in place."""
    for fd in list(_HELD_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


class RunInUse(UsageError):
    """The folder's lock is held by another live process (exit 2)."""

class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock`` for the life of a writer (released on close,
    or by the kernel when the process dies, however it dies; forked workers do not inherit
    it). The holder's pid is in the file."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        try:
            self.fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)  # a symlinked .lock is not followed
        except OSError as exc:
            raise path_error("the lock file", self.path, exc) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(self.fd, 64, 0).decode().strip()
            os.close(self.fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                if holder.isdigit() and not pid_alive(int(holder)):
                    who = f"a process left by pid {holder} (which has ended) still holds it"
                else:
                    who = f"pid {holder} is writing it" if holder.isdigit() else "another process is writing it"
                raise RunInUse(f"{Path(run_dir)} is in use: {who} (two writers would mix their "
                                 "checkpoints and metrics); wait for it to finish or stop it, then "
                                 "try again") from None
            raise path_error("a lock on", self.path, exc) from None
        _HELD_LOCK_FDS.add(self.fd)
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        if self.fd is not None:
            _HELD_LOCK_FDS.discard(self.fd)
            with contextlib.suppress(OSError):
                os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def claim_run(run_dir: str | os.PathLike, locks: contextlib.ExitStack, *, ckpt: dict | None = None,
              ckpt_path: Path | None = None, data_key: str | None = None, force: bool = False,
              recipe_file_diffs=None) -> list[str]:
    """Lock ``run_dir`` for this writer (held until ``locks`` closes) and, for a resume, prove
    that ``ckpt`` belongs to it: the same run id (folder vs checkpoint), the same data
    (``data_key`` vs the one recorded), and a ``recipe.yaml`` nobody edited since
    (``recipe_file_diffs``: a callable giving its differences from the checkpoint's recipe,
    or None not to check). A mismatch is a UsageError (exit 2) unless ``force``; the notices
    returned say what ``force`` let through. ``run.json`` then records id and data key.
    """
    run_dir = Path(run_dir)
    locks.enter_context(RunLock(run_dir))
    info = read_run_info(run_dir)
    notices: list[str] = []
    if ckpt is not None:
        problems = []
        folder_id, ckpt_id = run_id_of(run_dir), ckpt.get("run_id")
        if folder_id and ckpt_id and folder_id != ckpt_id:
            problems.append((f"{ckpt_path} belongs to another run (run id {ckpt_id[:12]}, this folder's is "
                             f"{folder_id[:12]}): was it copied here? Resume the run it came from",
                             "continue this folder from it"))
        elif folder_id and not ckpt_id:
            problems.append((f"{ckpt_path} carries no run id, so it cannot be shown to belong to {run_dir} "
                             "(written by an older cifarctl, or not by this run)", "continue from it"))
        elif ckpt_id and not folder_id:
            problems.append((f"{run_dir} has no {RUN_FILE}, so {ckpt_path} (run id {ckpt_id[:12]}) cannot be "
                             "shown to belong to it", "continue from it"))
        stored_key = ckpt.get("data_key") or info.get("data_key")
        if stored_key and data_key and stored_key != data_key:
            was = ckpt.get("data_source") or info.get("data_source") or "its data"
            problems.append((f"{run_dir} was trained on {was} (content key {str(stored_key)[:12]}) but "
                             f"the data given now has another content (key {data_key[:12]}): resume with "
                             "the run's data (--data)", "train on the new data"))
        if recipe_file_diffs is not None:
            diffs = recipe_file_diffs()
            if diffs:
                shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
                problems.append((f"{run_dir / 'recipe.yaml'} was edited after its checkpoint was saved "
                                 f"({shown}); a resume continues the checkpoint's recipe. To train with the "
                                 f"edits: `cifarctl train {run_dir / 'recipe.yaml'} --resume {run_dir} --force`",
                                 "ignore the edits (recipe.yaml is then rewritten)"))
        for why, forced in problems:
            if not force:
                raise UsageError(f"{why}; or pass --force to {forced}")
            notices.append(f"warning: --force: {why.split(':')[0]}; going on as asked ({forced})")
    run_id = (info.get("run_id") if isinstance(info.get("run_id"), str) else None) or new_run_id()
    updated = {**info, "run_id": run_id}
    if data_key:
        updated["data_key"] = data_key
    if updated != info:
        write_json(run_dir / RUN_FILE, updated)
    return notices


def recipe_file_differences(run_dir: str | os.PathLike, stored: dict) -> list[str]:
    """How the run folder's ``recipe.yaml`` differs from the checkpoint's recipe (``stored``):
    edits made by hand since the checkpoint was saved. [] when it is absent (an older
    folder) or the same."""
    path = Path(run_dir) / "recipe.yaml"
    if not os.path.lexists(path):
        return []
    try:
        raw = yamlsafe.read_file(path)
    except RecipeError as exc:
        return [f"it no longer reads as a recipe: {'; '.join(exc.problems)}"]
    if not isinstance(raw, dict):
        return [f"it is a {type(raw).__name__}, not a recipe mapping"]
    return recipe_differences(stored, raw)


def write_json(path: str | os.PathLike, obj: Any, after: str = "") -> None:
    """``obj`` as indented JSON, written atomically (:func:`write_atomic`; ``after`` is added
    to the error line)."""
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n", after=after)


def _git_revision() -> str | None:
    """The commit of cifarctl's own source checkout (an editable install), not of the
    current directory, which may be any project or none."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str, device_name: str | None = None, argv: list[str] | None = None) -> dict:
    """What env.json records about this process."""
    return {
        "python": platform.python_version(), "torch": torch.__version__, "cifarctl": __version__,
        "device": device, "device_name": device_name or platform.processor() or platform.machine(),
        "git_revision": _git_revision(), "command": list(sys.argv if argv is None else argv),
        "cwd": os.getcwd(), "hostname": socket.gethostname(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def write_env(run_dir: Path, env: dict) -> None:
    """env.json; a resumed run keeps the first one and appends to its ``resumes`` list."""
    path = Path(run_dir) / "env.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            old.setdefault("resumes", []).append(env)
            env = old
    write_json(path, env)


def read_json(path: Path, limit: int = 16 << 20) -> Any:
    """A run folder's JSON file, or None: missing, not a regular file (a symlink or a FIFO is
    not followed), over ``limit`` bytes, or not JSON."""
    data = read_regular(path, limit)
    try:
        return None if data is None else json.loads(data)
    except (ValueError, RecursionError):
        return None


class RunFiles:
    """The append-only files of a run folder: metrics.jsonl and log.txt; and its checkpoints,
    stamped with the run id and data key of ``run.json`` (:meth:`save_checkpoint`)."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        info = read_run_info(self.dir)
        self.run_id, self.data_key = info.get("run_id"), info.get("data_key")
        self.ckpt_dir = self.dir / CHECKPOINT_DIR
        try:
            self.ckpt_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise path_error("the checkpoints folder", self.ckpt_dir, exc) from None
        self.last, self.best = checkpoint_path(self.dir, "last"), checkpoint_path(self.dir, "best")
        for folder in (self.dir, self.ckpt_dir):  # left by a process killed while saving; not
            remove_temps(folder, ".*.tmp-*", spare_live=True)  # those of a live eval or misclassified

    def _append(self, name: str, line: str) -> None:
        path = self.dir / name
        try:  # never through a symlink to a file outside the run, never into a FIFO
            fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(line.rstrip("\n") + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise write_error(path, exc) from None

    def log(self, line: str) -> None:
        """Append to log.txt; best effort (the same lines go to the terminal), so that the
        error of a run that stops because the disk is full is still the one reported."""
        try:
            self._append("log.txt", line)
        except WriteError:
            pass

    def metrics(self, row: dict) -> None:
        self._append("metrics.jsonl", json.dumps(row))

    def csv(self, text: str) -> None:
        """metrics.csv (metrics.jsonl's rows as CSV), rewritten whole: it follows a resume's truncation."""
        write_atomic(self.dir / "metrics.csv", text)

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the first ``epochs`` rows (a resume from an older checkpoint drops the rest)."""
        path = self.dir / "metrics.jsonl"
        if not path.is_file():
            return
        rows = [ln for ln in path.read_text().splitlines() if ln.strip()]
        kept = []
        for ln in rows:
            try:
                if int(json.loads(ln).get("epoch", 0)) <= epochs:
                    kept.append(ln)
            except (ValueError, AttributeError):
                continue
        if len(kept) != len(rows):
            write_atomic(path, "".join(k + "\n" for k in kept))

    def summary(self, summary: dict) -> None:
        try:
            write_json(self.dir / "summary.json", summary)
        except WriteError:
            if summary.get("status") in ("running", "completed"):
                raise
            # on the way out after an error: that error is the one to report

    def save_checkpoint(self, state: dict, path: str | os.PathLike) -> None:
        """:func:`save_checkpoint` with this run's id and data key in the checkpoint."""
        save_checkpoint({**state, "run_id": self.run_id, "data_key": self.data_key}, path)


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.pt``), if any."""
    checkpoint = Path(checkpoint).resolve()
    if checkpoint.parent.name == CHECKPOINT_DIR and (checkpoint.parent.parent / "recipe.yaml").exists():
        return checkpoint.parent.parent
    return None
