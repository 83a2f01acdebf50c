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
``os.replace``d, so a crash leaves either the old or the new file, never half of one.
Checkpoints are only ever read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cifarctl import __version__
from cifarctl.errors import CheckpointError, UsageError

CHECKPOINT_FORMAT = "cifarctl-checkpoint"
CHECKPOINT_VERSION = 1
ENV_SLOW_SAVE = "CIFARCTL_TEST_SLOW_SAVE"  # test hook: seconds to sleep before os.replace


# ------------------------------------------------------------------------ folders
def create_run_dir(runs_dir: str | os.PathLike, recipe_name: str, name: str | None = None) -> Path:
    """A new, empty ``<runs_dir>/<name or recipe-YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... if taken).

    ``os.mkdir`` is atomic: two processes starting in the same second get two folders.
    """
    if name is not None and (not name.strip() or "/" in name or os.sep in name or name in (".", "..")):
        raise UsageError(f"--name {name!r}: expected a plain folder name (no '/')")
    parent = Path(runs_dir)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the runs folder {parent}: {exc.strerror or exc}") from None
    base = name or f"{recipe_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 10_000):
        path = parent / (base if i == 1 else f"{base}-{i}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        (path / "checkpoints").mkdir()
        return path
    raise UsageError(f"cannot create a run folder under {parent}: {base} .. {base}-9999 all exist")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a fsynced temp file in the same folder."""
    path = Path(path)
    tmp = _temp_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


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

    def _append(self, name: str, line: str) -> None:
        with open(self.dir / name, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")
            f.flush()
            os.fsync(f.fileno())

    def log(self, line: str) -> None:
        self._append("log.txt", line)

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
        write_json(self.dir / "summary.json", summary)

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
    tmp = _temp_for(Path(path))
    try:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def save_checkpoint(obj: dict, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same folder, fsync, os.replace, fsync the folder."""
    import torch

    path = Path(path)
    tmp = _temp_for(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        slow = os.environ.get(ENV_SLOW_SAVE)
        if slow:
            time.sleep(float(slow))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


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
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip, pickle and unpickling errors of every kind
        if "Weights only load failed" in str(exc):
            what = "refused by weights_only loading: it holds objects other than tensors and plain data"
        else:
            what = f"truncated or corrupted: {_first_line(exc)}"
        raise CheckpointError(f"{path}: not a readable checkpoint ({what})") from None
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
