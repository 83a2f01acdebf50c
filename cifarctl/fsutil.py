"""Small file-system helpers shared by the data cache, the run folders and every command
that writes a file.

:func:`write_atomic` is the one way a file is written: through a fsynced temp file in the
same folder and ``os.replace``, so a reader (or a crash) sees the old file or the new one,
never half of one; an ``OSError`` becomes one line naming the file and the reason
(:func:`write_error`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
import unicodedata
from pathlib import Path

from cifarctl.errors import CifarctlError, UsageError, WriteError

# errnos of a full disk or a size limit
FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
# errnos that mean the path itself is wrong (too long, a file or a folder in the way, a
# link loop): the user's to fix when the user gave the path
BAD_PATH_ERRNOS = (errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EINVAL,
                   errno.ELOOP, errno.EILSEQ)


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


def temp_for(path: Path) -> Path:
    """The temp file :func:`replace_file` writes ``path`` through: ``.<name>.tmp-<pid>``, the
    name shortened (with a hash of it) when that would pass the 255-byte limit of a name."""
    name = f".{path.name}.tmp-{os.getpid()}"
    if len(name.encode()) > 255:

        digest = hashlib.sha256(path.name.encode()).hexdigest()[:16]
        name = f".{path.name.encode()[:200].decode(errors='ignore')}~{digest}.tmp-{os.getpid()}"
    return path.with_name(name)


def temp_owner(name: str) -> int | None:
    """The pid in a ``.<name>.tmp-<pid>`` temp file's name, or None."""
    tail = name.rpartition(".tmp-")[2]
    return int(tail) if tail.isdigit() else None


# a folder is refused by os.replace itself ("Is a directory: give a file name, not a folder")
_NOT_FILES = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"),
              (stat.S_ISSOCK, "socket"))


class NotAFileError(UsageError):
    """A write target that exists and is not a regular file (exit 2): never replaced."""

def check_target(path: Path) -> None:
    """Refuse to write over a device, FIFO or socket: the atomic replace would put a
    regular file in its place (as root, ``--out /dev/null`` would replace the system's
    /dev/null). A symlink itself is replaced, never followed; a missing path is fine."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    kind = next((name for test, name in _NOT_FILES if test(mode)), None)
    if kind is not None:
        raise NotAFileError(f"{path} is a {kind}, not a regular file: cifarctl writes a file by replacing "
                            f"it and never replaces a {kind}; give the path of a file")


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_regular(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that follows no symlink (the last component), never blocks on a FIFO, and
    returns only a regular file's descriptor: run-folder files are untrusted input."""
    fd = os.open(path, flags | NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def read_regular(path: str | os.PathLike, limit: int = 64 << 20) -> bytes | None:
    """The bytes of a regular file of at most ``limit`` bytes, or None: no such file, a
    symlink, a FIFO or device, too large, unreadable."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)[:limit]
    except OSError:
        return None
    finally:
        os.close(fd)


def replace_file(path: Path, data) -> None:
    """Write ``data`` (bytes-like) to ``path``'s temp file, fsync it, ``os.replace`` ``path``
    with it, fsync the folder; raises ``OSError`` (the temp file removed), or
    :class:`NotAFileError` when ``path`` is a device, FIFO or socket (nothing written)."""
    check_target(path)
    tmp = temp_for(path)
    replaced = False
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        replaced = True
    finally:
        if not replaced:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    fsync_dir(path.parent)


def write_error(path: str | os.PathLike, exc: OSError, after: str = "", *,
                user_path: bool = False) -> CifarctlError:
    """One line naming the file that could not be written, and why: a :class:`WriteError`
    (exit 1), or a :class:`UsageError` (exit 2) when the user gave ``path`` (``user_path``)
    and the path itself is wrong (a folder or a file in the way, too long)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in FULL_ERRNOS:
        reason += ": the disk is full or the file is over a size limit"
    elif exc.errno == errno.EISDIR:
        reason += ": give a file name, not a folder"
    elif exc.errno == errno.ENOTDIR and exc.strerror == os.strerror(errno.ENOTDIR):
        reason += ": a file is in the way of a folder of its path"
    line = f"cannot write {path} ({reason}){after}"
    return UsageError(line) if user_path and exc.errno in BAD_PATH_ERRNOS else WriteError(line)


def _make_parent(path: Path) -> None:
    """``path``'s folder, made with its parents; a file in the way is named (mkdir says
    "File exists" about the folder it could not make)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTDIR):
            raise
        blocker = next((a for a in (path.parent, *path.parent.parents) if os.path.lexists(a) and not a.is_dir()), None)
        if blocker is None:
            raise
        raise OSError(errno.ENOTDIR, f"{os.strerror(errno.ENOTDIR)}: {blocker} is a file, not a folder",
                      str(path.parent)) from None


def default_cache_dir() -> Path:
    """``$CIFARCTL_DATA_DIR``, else ``$XDG_CACHE_HOME/cifarctl``, else ``~/.cache/cifarctl``."""
    env = os.environ.get("CIFARCTL_DATA_DIR")
    if env:
        return Path(os.path.expanduser(env))
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "cifarctl"


def write_atomic(path: str | os.PathLike, data: bytes | str, *, parents: bool = False,
                 user_path: bool = False, after: str = "") -> None:
    """Write ``data`` to ``path`` atomically (:func:`replace_file`), its folder made first
    when ``parents``. Any ``OSError`` is one line naming ``path`` (:func:`write_error`),
    which says the previous file is intact only when there was one; ``after`` is added to it."""
    path = Path(path)
    try:
        existed = path.is_file()
    except OSError:
        existed = False
    try:
        if parents:
            _make_parent(path)
        replace_file(path, data.encode() if isinstance(data, str) else data)
    except OSError as exc:
        kept = f"; the previous {path.name} is intact" if existed else ""
        raise write_error(path, exc, kept + after, user_path=user_path) from None


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists (or cannot be signalled: it exists)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_temps(folder: Path, pattern: str, older_than_s: float = 0.0, *, spare_live: bool = False) -> None:
    """Delete the temp files matching ``pattern`` that a killed writer left in ``folder``
    (best effort); only those last modified over ``older_than_s`` seconds ago, when a live
    process may still be writing one; with ``spare_live``, never one whose name holds the pid
    of a live process (an ``eval`` writing into a folder that a ``train`` opens)."""
    now = time.time()
    for p in Path(folder).glob(pattern):
        try:
            owner = temp_owner(p.name) if spare_live else None
            if owner is not None and pid_alive(owner):
                continue
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
    if any(c in name for c in "[]"):
        return "holds '[' or ']' (a terminal library would read them as markup)"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long (at most {MAX_NAME_BYTES})"
    return None
