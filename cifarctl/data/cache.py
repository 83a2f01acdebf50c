"""The decoded-array cache: ``<cache_dir>/decoded/<name>-<key>.npz``.

Decoding 60k JPEGs takes seconds; reloading the uint8 arrays from an uncompressed
``.npz`` takes well under one. The key is a cheap fingerprint of the source's content
(see :func:`fingerprint`), so editing, replacing or touching the source rebuilds it.
Files are written atomically (temp file in the same folder, fsync, ``os.replace``): a
killed decode leaves at most a ``.tmp-*`` file, which a later save removes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from cifarctl.fsutil import fsync_dir, remove_temps

log = logging.getLogger("cifarctl.data")

CACHE_VERSION = 1         # bump when the array layout or the readers' output changes
_EDGE = 1 << 20           # bytes hashed at each end of a file
_STALE_TEMP_S = 3600      # a temp file this old belongs to a killed process
ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def default_cache_dir() -> Path:
    """``$CIFARCTL_DATA_DIR``, else ``$XDG_CACHE_HOME/cifarctl``, else ``~/.cache/cifarctl``."""
    env = os.environ.get("CIFARCTL_DATA_DIR")
    if env:
        return Path(os.path.expanduser(env))
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "cifarctl"


def fingerprint(path: Path) -> str:
    """A hash that changes when the data at ``path`` changes, without reading all of it.

    Files: absolute path, size, mtime_ns and sha256 of the first and last MiB.
    Folders: absolute path and every file's (relative path, size, mtime_ns).
    """
    path = path.resolve()
    h = hashlib.sha256(f"v{CACHE_VERSION}\0{path}\0".encode())
    if path.is_dir():
        rows = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in filenames:
                full = os.path.join(dirpath, name)
                st = os.stat(full)
                rows.append(f"{os.path.relpath(full, path)}\0{st.st_size}\0{st.st_mtime_ns}")
        h.update("\n".join(sorted(rows)).encode())
    else:
        st = path.stat()
        h.update(f"{st.st_size}\0{st.st_mtime_ns}\0".encode())
        with open(path, "rb") as f:
            h.update(f.read(_EDGE))
            if st.st_size > _EDGE:
                f.seek(max(_EDGE, st.st_size - _EDGE))
                h.update(f.read(_EDGE))
    return h.hexdigest()


def cache_file(cache_dir: Path, source: Path) -> Path:
    """Where the decoded arrays of ``source`` live (the file may not exist yet)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name)[:60] or "data"
    return cache_dir / "decoded" / f"{slug}-{fingerprint(source)[:20]}.npz"


def load(path: Path) -> dict | None:
    """The cached arrays, or None when absent; an unreadable file is deleted (one warning)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in (*ARRAYS, "classes", "description")}
        if out["train_x"].dtype != np.uint8 or out["train_x"].shape[1:] != (32, 32, 3):
            raise ValueError(f"train_x is {out['train_x'].dtype} {out['train_x'].shape}")
        out["classes"] = [str(c) for c in out["classes"]]
        out["description"] = str(out["description"])
        return out
    except Exception as e:  # noqa: BLE001 - any failure: throw it away and decode again
        log.warning("warning: cache file %s is unreadable (%s); deleting and rebuilding it",
                    path, str(e).splitlines()[0] if str(e) else type(e).__name__)
        path.unlink(missing_ok=True)
        return None


def save(path: Path, arrays: dict[str, np.ndarray], classes: list[str], description: str) -> bool:
    """Write atomically; False (with a warning) when the cache folder is not writable."""
    folder = path.parent
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_temps(folder, ".tmp-*", older_than_s=_STALE_TEMP_S)  # the cache may be shared
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the cache may be shared
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: arrays[k] for k in ARRAYS}, classes=np.array(classes, dtype=str),
                     description=np.array(description))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(folder)
        return True
    except OSError as e:
        log.warning("warning: cannot write the data cache %s (%s); set CIFARCTL_DATA_DIR to a "
                    "writable folder to skip decoding next time", path, e.strerror or e)
        return False
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
