"""The decoded-array cache: ``<cache_dir>/decoded/<name>-<key>.npz``.

Decoding 60k JPEGs takes seconds; reloading the uint8 arrays from an uncompressed
``.npz`` takes well under one. The key is a cheap fingerprint of the source's content
(see :func:`fingerprint`), so editing, replacing or touching the source rebuilds it.
Files are written atomically (temp file in the same folder, fsync, ``os.replace``): a
killed decode leaves at most a ``.tmp-*`` file, which a later save removes.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from cifarctl.errors import DataError
from cifarctl.fsutil import default_cache_dir, fsync_dir, remove_temps  # noqa: F401 (re-exported)

log = logging.getLogger("cifarctl.data")


CACHE_VERSION = 1         # bump when the array layout or the readers' output changes
_EDGE = 1 << 20           # bytes hashed at each end of a file
_STALE_TEMP_S = 3600      # a temp file this old belongs to a killed process
ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def _stat(full: str):
    try:
        return os.stat(full)
    except OSError as exc:

        if os.path.islink(full):
            why = "symbolic link loop" if exc.errno == errno.ELOOP else \
                f"dangling symbolic link (to {os.readlink(full)!r})"
            raise DataError(f"{full}: {why}: remove it or fix what it points to") from None
        raise DataError(f"{full}: cannot be read ({exc.strerror or exc})") from None


def _hash_content(path: Path, h, with_times: bool) -> None:
    if path.is_dir():
        rows = []
        for dirpath, dirnames, filenames in os.walk(path, onerror=_walk_error):
            dirnames.sort()
            for name in filenames:
                full = os.path.join(dirpath, name)
                st = _stat(full)
                when = f"\0{st.st_mtime_ns}" if with_times else ""
                rows.append(f"{os.path.relpath(full, path)}\0{st.st_size}{when}")
        h.update("\n".join(sorted(rows)).encode())
    else:
        st = _stat(str(path))
        h.update(f"{st.st_size}\0{st.st_mtime_ns if with_times else ''}\0".encode())
        with open(path, "rb") as f:
            h.update(f.read(_EDGE))
            if st.st_size > _EDGE:
                f.seek(max(_EDGE, st.st_size - _EDGE))
                h.update(f.read(_EDGE))


def _walk_error(exc: OSError) -> None:
    raise DataError(f"{exc.filename}: cannot be read ({exc.strerror or exc})")


def fingerprint(path: Path) -> str:
    """A hash that changes when the data at ``path`` changes, without reading all of it.

    Files: absolute path, size, mtime_ns and sha256 of the first and last MiB.
    Folders: absolute path and every file's (relative path, size, mtime_ns). A link that
    leads nowhere (dangling, loop) or an unreadable file is a DataError naming it.
    """
    path = path.resolve()
    h = hashlib.sha256(f"v{CACHE_VERSION}\0{path}\0".encode())
    _hash_content(path, h, with_times=True)
    return h.hexdigest()


def content_key(path: Path) -> str:
    """:func:`fingerprint` without the path and the modification times: the same for a copy
    of the same data anywhere (what a run records of its data, to refuse resuming on other
    data), different when files are added, removed, resized, or their ends change."""
    h = hashlib.sha256(f"content-v{CACHE_VERSION}\0".encode())
    _hash_content(Path(path).resolve(), h, with_times=False)
    return h.hexdigest()


def cache_file(cache_dir: Path, source: Path, variant: str = "") -> Path:
    """Where the decoded arrays of ``source`` live (the file may not exist yet); ``variant``
    names another decoding of the same source (an image size, CIFAR-100's coarse labels)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name)[:60] or "data"
    return cache_dir / "decoded" / f"{slug}-{fingerprint(source)[:20]}{'-' + variant if variant else ''}.npz"


def problems(arrays: dict, classes) -> str | None:
    """What is inconsistent in a set of decoded arrays (checked as a whole), or None: every
    image array uint8 (N, S, S, 3) with one S, every label array 1-D integers, as many labels
    as images, labels in 0..len(classes)-1, and at least two distinct class names."""
    names = [str(c) for c in classes]
    if len(names) < 2 or len(set(names)) != len(names):
        return f"classes are {names[:12]}: expected at least two distinct names"
    side = getattr(arrays.get("train_x"), "shape", (0, 0))[1:2]
    for split in ("train", "test"):
        x, y = arrays.get(f"{split}_x"), arrays.get(f"{split}_y")
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 \
                or x.shape[1] != x.shape[2] or x.shape[1:2] != side or x.shape[1] < 1:
            return f"{split}_x is {getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}, " \
                   "expected uint8 (N, S, S, 3), one S for both splits"
        if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) \
                or y.dtype == bool:
            return f"{split}_y is {getattr(y, 'dtype', type(y).__name__)} {getattr(y, 'shape', '')}, " \
                   "expected 1-D integer labels"
        if len(x) != len(y):
            return f"{len(x)} {split} images but {len(y)} labels"
        if len(y) == 0:
            return f"no {split} images"
        if int(y.min()) < 0 or int(y.max()) >= len(classes):
            return f"{split} labels span {int(y.min())}..{int(y.max())}, outside 0..{len(classes) - 1}"
    return None


def load(path: Path) -> dict | None:
    """The cached arrays, checked as a whole (:func:`problems`), or None when absent; an
    unreadable or inconsistent file is deleted (one warning) and the source decoded again."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in (*ARRAYS, "classes", "description")}
        out["classes"] = [str(c) for c in out["classes"]]
        out["description"] = str(out["description"])
        bad = problems(out, out["classes"])
        if bad:
            raise ValueError(f"inconsistent arrays: {bad}")
        out["train_y"] = out["train_y"].astype(np.int64, copy=False)
        out["test_y"] = out["test_y"].astype(np.int64, copy=False)
        return out
    except Exception as e:  # noqa: BLE001 - any failure: throw it away and decode again
        log.warning("warning: cache file %s is unreadable (%s); deleting and rebuilding it",
                    path, str(e).splitlines()[0] if str(e) else type(e).__name__)
        path.unlink(missing_ok=True)
        return None


def save(path: Path, arrays: dict[str, np.ndarray], classes: list[str], description: str) -> bool:
    """Write atomically; False (with a warning) when the cache folder is not writable. Arrays
    that fail :func:`problems` are never written (False)."""
    bad = problems(arrays, classes)
    if bad:
        log.warning("warning: not caching the decoded data (%s)", bad)
        return False
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
