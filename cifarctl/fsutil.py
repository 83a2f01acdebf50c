"""Small file-system helpers shared by the data cache and the run folders."""

from __future__ import annotations

import os
import time
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entry table so a rename into it survives a crash (best effort)."""
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


def remove_temps(folder: Path, pattern: str, older_than_s: float = 0.0) -> None:
    """Delete the temp files matching ``pattern`` that a killed writer left in ``folder``
    (best effort); only those last modified over ``older_than_s`` seconds ago, when a live
    process may still be writing one."""
    now = time.time()
    for p in Path(folder).glob(pattern):
        try:
            if now - p.stat().st_mtime >= older_than_s:
                p.unlink()
        except OSError:
            pass


MAX_NAME_BYTES = 100  # a run folder adds "-YYYYmmdd-HHMMSS-N"; file systems allow 255 bytes


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe single path component (a run or recipe name), or None.

    One folder name inside the runs folder: no ``/`` or ``\\``, not ``.``/``..`` nor
    hidden (leading ``.``), no NUL or other control characters, not blank, at most
    :data:`MAX_NAME_BYTES` bytes in UTF-8.
    """
    import unicodedata

    if not isinstance(name, str):
        return "expected a string"
    if not name.strip():
        return "is empty"
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        return "must be a single folder name (no '/' or '\\')"
    if name.startswith("."):
        return "must not start with '.' ('..' leaves the runs folder; '.name' is hidden)"
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")), None)
    if bad is not None:
        return f"holds the control or invisible character {bad!r}"
    if name != name.strip():
        return "has leading or trailing spaces"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long (at most {MAX_NAME_BYTES})"
    return None
