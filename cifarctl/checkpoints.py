"""Checkpoint files: what a run saves and ``--resume``, ``eval`` and the rest read back.

Saved through a temp file in the same folder, fsynced and renamed over the old one, so a
crash leaves the old or the new file, never half of one; a second Ctrl-C/SIGTERM during a
save (in the main thread) waits until the file is complete (:func:`defer_signal`). Read only
with ``torch.load(weights_only=True)``, after checking the zip checksums, so a damaged file
is an error rather than wrong weights; a file without cifarctl's format marker, or of a
newer format, is refused. What a checkpoint holds is :mod:`cifarctl.training.checkpoint`.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarctl.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, CheckpointError, UnsafeCheckpointError, UsageError
from cifarctl.fsutil import FULL_ERRNOS as _FULL
from cifarctl.fsutil import replace_file, write_error

CHECKPOINT_FORMAT = "cifarctl-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"  # in a run folder: last.pt (the newest state) and best.pt


def checkpoint_path(run_dir: str | os.PathLike, which: str = "last") -> Path:
    """A run folder's ``checkpoints/<which>.pt``: ``last`` or ``best``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{which}.pt"


# ------------------------------------------------------------------------ signals during saves
class SecondSignal(KeyboardInterrupt):
    """A second SIGINT/SIGTERM: stop now. ``exit_code`` says which signal (130 / 143)."""

    def __init__(self, signal_name: str = "SIGINT", after_save: bool = False):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.after_save = after_save
        self.exit_code = EXIT_TERMINATED if signal_name == "SIGTERM" else EXIT_INTERRUPTED


_saving = {"depth": 0, "pending": None}


def defer_signal(signal_name: str) -> bool:
    """For a signal handler: True when a checkpoint is being saved, in which case the signal
    is raised (as :class:`SecondSignal`) once the file is complete, instead of now."""
    if _saving["depth"]:
        _saving["pending"] = _saving["pending"] or signal_name
        return True
    return False


@contextlib.contextmanager
def _signals_deferred():
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; the background writer is drained there
        return
    _saving["depth"] += 1
    ok = False
    try:
        yield
        ok = True
    finally:
        _saving["depth"] -= 1
        pending = _saving["pending"] if _saving["depth"] == 0 else None
        if _saving["depth"] == 0:
            _saving["pending"] = None
        if pending and ok:
            raise SecondSignal(pending, after_save=True)


def second_signal_message(exc: BaseException) -> str:
    """The log line of a run stopped by a second signal."""
    name = getattr(exc, "signal_name", "signal")
    if getattr(exc, "after_save", False):
        return f"interrupted (second {name}): stopped after finishing the checkpoint being saved"
    return f"interrupted (second {name}): stopped without saving the current epoch"



# ------------------------------------------------------------------------ checkpoints
def capture_rng(generator=None, device=None) -> dict:
    """Every RNG state of this process as tensors, lists and numbers only (loads with
    weights_only=True). CUDA: the generator of ``device`` alone (the training device), not
    one per visible GPU: a resume may see fewer GPUs, or another one."""

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    cuda = device is not None and torch.device(device).type == "cuda" and torch.cuda.is_initialized()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if cuda else None,
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": [int(v) for v in internal],
                   "gauss": None if gauss is None else float(gauss)},
        "generator": generator.get_state() if generator is not None else None,
    }


def restore_rng(rng: dict, generator=None, device=None) -> None:
    """Undo :func:`capture_rng`; the CUDA state goes to ``device`` (the training device).

    A checkpoint of an older version holds a list, one state per GPU visible then: the
    entry of ``device``'s index is taken when there is one."""

    torch.set_rng_state(rng["torch"])
    cuda = rng.get("cuda")
    if cuda is not None and device is not None and torch.device(device).type == "cuda":
        device = torch.device(device)
        if isinstance(cuda, (list, tuple)):
            index = torch.cuda.current_device() if device.index is None else device.index
            cuda = cuda[index] if index < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
    n = rng["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = rng["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if generator is not None and rng.get("generator") is not None:
        generator.set_state(rng["generator"])


def save_checkpoint(obj: dict, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same folder, fsync, os.replace, fsync the folder.

    Serialized in memory first, so that a full disk is an ``OSError`` we can name (torch's
    own file writer reports it as an opaque RuntimeError); raises :class:`WriteError`,
    with the previous checkpoint at ``path`` untouched.
    """
    path = Path(path)
    existed = path.is_file()
    buf = io.BytesIO()
    torch.save(obj, buf)
    try:
        with _signals_deferred():  # a second Ctrl-C/SIGTERM waits for the file to be complete
            replace_file(path, buf.getbuffer())
    except OSError as exc:
        run = path.parent.parent if path.parent.name == "checkpoints" else None
        then = f"continue with `cifarctl train --resume {run}`" if run else "save again"
        kept = f"the previous {path.name} is intact" if existed else f"no {path.name} was saved"
        fix = "free some space" if exc.errno in _FULL else "make it writable"
        raise write_error(path, exc, f"; {kept}: {fix}, then {then}") from None


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_weights(ckpt: dict) -> dict:
    """The weights a checkpoint's run stands for: the averaged ones when the recipe had
    ``ema`` (AveragedModel's ``module.*`` entries), else the trained ones."""
    ema = ckpt.get("ema")
    if not isinstance(ema, dict):
        return ckpt["model"]
    return {k[len("module."):]: v for k, v in ema.items() if k.startswith("module.")}


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; any problem is one
    :class:`CheckpointError` line naming the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        f = open(path, "rb")  # once: a run that trains replaces the file (os.replace) while it is read
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise CheckpointError(f"{path}: not a readable checkpoint (empty file: 0 bytes)")
        _check_zip(path, f)  # the file that is then loaded, not a newer one
        try:
            f.seek(0)
            obj = torch.load(f, map_location=map_location, weights_only=True)
        except Exception as exc:  # zip, pickle and unpickling errors of every kind
            raise _unreadable(path, exc) from None
    return _checked(path, obj)


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    """The one line for a checkpoint that torch.load refused."""
    if "Weights only load failed" in str(exc):
        return UnsafeCheckpointError(
            f"{path}: not a readable checkpoint (refused by weights_only loading: it holds objects "
            "other than tensors and plain data; it was not written by cifarctl and may be malicious)")
    return CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted: {_first_line(exc)})")


def _checked(path: Path, obj: Any) -> dict:
    """``obj`` if it is a complete cifarctl checkpoint of a version this cifarctl reads."""
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


def _check_zip(path: Path, f=None) -> None:
    """torch does not check the CRC-32 of zip members: a flipped bit in a tensor loads as a
    wrong weight. Check them all (about 1 GB/s) before loading; ``f``: the open file."""
    src = f if f is not None else path
    try:
        if not zipfile.is_zipfile(src):
            return  # the legacy format, or not a checkpoint: torch.load says which
        with zipfile.ZipFile(src) as zf:
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
    folder = Path(run_dir_or_file)
    last, best = checkpoint_path(folder, "last"), checkpoint_path(folder, "best")
    if folder.is_dir() and not os.path.lexists(last) and best.is_file():
        # a full disk or a kill before last.pt was first written: best.pt is the newest state there is
        ckpt = load_checkpoint(best)
        return best, ckpt, (f"{folder} has no checkpoints/last.pt; resuming from {best} (epoch "
                            f"{ckpt['epoch']}), whose epochs after it are trained again")
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
    for candidate in (checkpoint_path(p, which), p / f"{which}.pt"):
        if candidate.is_file():
            return candidate
    if which == "best" and checkpoint_path(p, "last").is_file():
        raise CheckpointError(f"{p}: no checkpoints/best.pt yet (the run stopped before the end of its first "
                              "epoch); --which last uses its checkpoints/last.pt")
    raise CheckpointError(f"{p}: no checkpoints/{which}.pt (not a cifarctl run folder, or the run "
                          "stopped before its first checkpoint)")


