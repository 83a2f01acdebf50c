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
