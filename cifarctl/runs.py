"""Run folders and checkpoints.

A run folder ``runs/<recipe>-<YYYYmmdd-HHMMSS>/`` holds::

    recipe.yaml      the resolved recipe
    env.json         versions, device, git revision, command line, host, start time
    metrics.jsonl    one JSON object per epoch (flushed and fsynced line by line): epoch,
                     train_loss/acc, test_loss/acc, lr, seconds, train_seconds, images_per_s
    summary.json     status, best/final accuracy, target verdict (atomic, every epoch)
    log.txt          the plain per-epoch lines (and a traceback if the run failed)
    curves.png       loss and accuracy by epoch (atomic, every epoch)
    checkpoints/last.pt, checkpoints/best.pt

Every file that is rewritten is written to a temp file in the same folder, fsynced and
``os.replace``d, so a crash leaves either the old or the new file, never half of one (a
killed process may leave a ``.<name>.tmp-<pid>`` file: the next run in the folder removes
it). A file that cannot be written (disk full) is a :class:`~cifarctl.errors.WriteError`
naming it. Checkpoints are only ever read with ``torch.load(weights_only=True)``, after
checking the zip checksums, so a damaged file is an error rather than wrong weights.
"""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import socket
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from cifarctl import __version__
from cifarctl.errors import CheckpointError, UnsafeCheckpointError, UsageError, WriteError
from cifarctl.fsutil import fsync_dir, remove_temps

CHECKPOINT_FORMAT = "cifarctl-checkpoint"
CHECKPOINT_VERSION = 1


# ------------------------------------------------------------------------ folders
def create_run_dir(runs_dir: str | os.PathLike, recipe_name: str, name: str | None = None, *,
                   now: datetime | None = None, checkpoints: bool = True) -> Path:
    """A new, empty ``<runs_dir>/<name or recipe-YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... if taken),
    with a ``checkpoints/`` folder unless ``checkpoints`` is False.

    ``os.mkdir`` is atomic: two processes starting in the same second get two folders.
    """
    if name is not None and (not name.strip() or "/" in name or os.sep in name or name in (".", "..")):
        raise UsageError(f"--name {name!r}: expected a plain folder name (no '/')")
    parent = Path(runs_dir)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the runs folder {parent}: {exc.strerror or exc}") from None
    base = name or f"{recipe_name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 10_000):
        path = parent / (base if i == 1 else f"{base}-{i}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        if checkpoints:
            (path / "checkpoints").mkdir()
        return path
    raise UsageError(f"cannot create a run folder under {parent}: {base} .. {base}-9999 all exist")


def _temp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def write_error(path: Path, exc: OSError, after: str = "") -> WriteError:
    """One line naming the file that could not be written, and why."""
    reason = exc.strerror or str(exc)
    if exc.errno in _FULL:
        reason += ": the disk is full or the file is over a size limit"
    return WriteError(f"cannot write {path} ({reason}){after}")


def _write_file(path: Path, data, before_replace=None) -> None:
    """Write ``data`` (bytes-like) to ``path``, fsync it, atomically replace ``path`` with it.

    ``before_replace()`` runs between the two (the tests' slow save, :mod:`cifarctl.training.faults`).
    """
    tmp = _temp_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a fsynced temp file in the same folder; the old
    file stays as it was when that fails (:class:`WriteError`)."""
    path = Path(path)
    try:
        _write_file(path, data.encode() if isinstance(data, str) else data)
    except OSError as exc:
        raise write_error(path, exc, f"; the previous {path.name} is intact") from None


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str, device_name: str | None = None, argv: list[str] | None = None) -> dict:
    """What env.json records about this process."""
    import torch

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


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class RunFiles:
    """The append-only files of a run folder: metrics.jsonl and log.txt."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.ckpt_dir = self.dir / "checkpoints"
        self.ckpt_dir.mkdir(exist_ok=True)
        self.last = self.ckpt_dir / "last.pt"
        self.best = self.ckpt_dir / "best.pt"
        for folder in (self.dir, self.ckpt_dir):  # left by a process killed while saving
            remove_temps(folder, ".*.tmp-*")

    def _append(self, name: str, line: str) -> None:
        path = self.dir / name
        try:
            with open(path, "a", encoding="utf-8") as f:
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

    def curves(self, history: list[dict]) -> None:
        write_curves(self.dir / "curves.png", history)


def write_curves(path: Path, history: list[dict]) -> None:
    """Train/test loss and accuracy by epoch (matplotlib Agg, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    for ax, key, title in ((fig.add_subplot(1, 2, 1), "loss", "loss"),
                           (fig.add_subplot(1, 2, 2), "acc", "accuracy (%)")):
        for split, style in (("train", "-o"), ("test", "-s")):
            ax.plot(epochs, [h[f"{split}_{key}"] for h in history], style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getbuffer())


# ------------------------------------------------------------------------ checkpoints
def capture_rng(generator=None) -> dict:
    """Every RNG state as tensors, lists and numbers only (loads with weights_only=True)."""
    import random

    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": [int(v) for v in internal],
                   "gauss": None if gauss is None else float(gauss)},
        "generator": generator.get_state() if generator is not None else None,
    }


def restore_rng(rng: dict, generator=None) -> None:
    """Undo :func:`capture_rng`."""
    import random

    import numpy as np
    import torch

    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    n = rng["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = rng["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if generator is not None and rng.get("generator") is not None:
        generator.set_state(rng["generator"])


def save_checkpoint(obj: dict, path: str | os.PathLike, before_replace=None) -> None:
    """torch.save to a temp file in the same folder, fsync, os.replace, fsync the folder.

    Serialized in memory first, so that a full disk is an ``OSError`` we can name (torch's
    own file writer reports it as an opaque RuntimeError); raises :class:`WriteError`,
    with the previous checkpoint at ``path`` untouched.
    """
    import torch

    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    try:
        _write_file(path, buf.getbuffer(), before_replace)
    except OSError as exc:
        run = path.parent.parent if path.parent.name == "checkpoints" else None
        then = f"continue with `cifarctl train --resume {run}`" if run else "save again"
        raise write_error(path, exc, f"; the previous {path.name} is intact: free some space, then "
                                     f"{then}") from None


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; any problem is one
    :class:`CheckpointError` line naming the file and what is wrong."""
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: not a readable checkpoint (empty file: 0 bytes)")
    _check_zip(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip, pickle and unpickling errors of every kind
        if "Weights only load failed" in str(exc):
            raise UnsafeCheckpointError(
                f"{path}: not a readable checkpoint (refused by weights_only loading: it holds objects "
                "other than tensors and plain data; it was not written by cifarctl and may be "
                "malicious)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted: "
                              f"{_first_line(exc)})") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a cifarctl checkpoint (a torch file without the "
                              f"{CHECKPOINT_FORMAT!r} format marker)")
    version = obj.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version!r} is newer than this cifarctl "
                              f"understands ({CHECKPOINT_VERSION}); upgrade cifarctl")
    missing = [k for k in ("model", "recipe", "model_name", "epoch") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint (missing {', '.join(missing)})")
    return obj


def _check_zip(path: Path) -> None:
    """torch does not check the CRC-32 of zip members: a flipped bit in a tensor loads as a
    wrong weight. Check them all (about 1 GB/s) before loading."""
    try:
        if not zipfile.is_zipfile(path):
            return  # the legacy format, or not a checkpoint: torch.load says which
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted: "
                              f"{_first_line(exc)})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupted: checksum mismatch in {bad}, "
                              "the file changed after it was written)")


def resume_checkpoint(run_dir_or_file: str | os.PathLike) -> tuple[Path, dict, str | None]:
    """``(path, checkpoint, note)`` for ``--resume``: ``checkpoints/last.pt``, or, when that
    file is damaged (not when it is refused as unsafe), an intact ``best.pt``, whose epochs
    after it are then trained again; ``note`` says so."""
    path = find_checkpoint(run_dir_or_file, "last")
    try:
        return path, load_checkpoint(path), None
    except UnsafeCheckpointError:
        raise
    except CheckpointError as exc:
        best = path.with_name("best.pt")
        if path.name != "last.pt" or not best.is_file():
            raise
        try:
            ckpt = load_checkpoint(best)
        except CheckpointError:
            raise exc from None
        return best, ckpt, f"{exc}; resuming from {best} (epoch {ckpt['epoch']}) instead"


def find_checkpoint(run_dir_or_file: str | os.PathLike, which: str = "last") -> Path:
    """``which``.pt of a run folder (``checkpoints/<which>.pt``), or the file itself."""
    p = Path(run_dir_or_file)
    if which not in ("last", "best"):
        raise UsageError(f"--which {which!r}: expected best or last")
    if not p.exists():
        raise CheckpointError(f"{p}: no such run folder or checkpoint")
    if p.is_file():
        return p
    for candidate in (p / "checkpoints" / f"{which}.pt", p / f"{which}.pt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{p}: no checkpoints/{which}.pt (not a cifarctl run folder, or the run "
                          "stopped before its first checkpoint)")


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.pt``), if any."""
    checkpoint = Path(checkpoint).resolve()
    if checkpoint.parent.name == "checkpoints" and (checkpoint.parent.parent / "recipe.yaml").exists():
        return checkpoint.parent.parent
    return None
