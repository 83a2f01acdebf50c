"""Readers for the on-disk layouts: CIFAR-10 and CIFAR-100 python batches, and image folders.

Both read a folder or a tar archive (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.xz``,
``.tar.bz2``); archives are streamed member by member, never extracted to disk, and read
to the end of the compressed stream, so that its checksum (gzip CRC-32, xz/bz2 block
checks) is verified: a corrupted archive is an error, never data. Every reader returns a
:class:`Decoded` with uint8 images (N, S, S, 3), int64 labels and the class names:
CIFAR-10's ten in their order, CIFAR-100's 100 fine or 20 coarse (``label_kind``) names, or
an image folder's class folders (at least two; CIFAR-10's order when they are its ten,
else sorted). An image folder's images may have any size and mode: each is made RGB and
resized to ``size`` by :func:`cifarctl.data.images.fit` (shorter side, centre crop); the
batches are 32x32.

Pickle is only used for the official ``cifar-10-batches-py`` and ``cifar-100-python``
formats, and through an
unpickler that accepts nothing but numpy arrays, lists, dicts, strings and numbers:
a crafted batch file cannot run code (see :class:`_BatchUnpickler`).

Images are decoded with Pillow in a small pool of forked processes when there are
enough of them to pay for it (timings in docs/benchmarks.md); decoding
is CPU-bound and threads do not help.

Size (~550 lines): two formats, each from a folder or an archive, share the member
streaming, the size limits, the class check and the decode pool.
"""

from __future__ import annotations

import bz2
import codecs
import ctypes
import errno
import gzip
import io
import lzma
import multiprocessing
import os
import pickle
import signal
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifarctl import CLASSES
from cifarctl.data.images import decode
from cifarctl.errors import DataError

Progress = Callable[[int, int], None]

BATCH_NAMES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
               "data_batch_5", "test_batch")
META_NAME = "batches.meta"
BATCHES_DIR = "cifar-10-batches-py"
C100_DIR = "cifar-100-python"
C100_NAMES = ("train", "test", "meta")
LABEL_KINDS = ("fine", "coarse")
LAYOUT_HELP = ("expected a cifar-10-batches-py or cifar-100-python folder, its .tar.gz, or an image "
               "folder/archive with train/<class>/ and test/<class>/")
SPLITS = ("train", "test")

CHUNK = 1000            # images per decode task
POOL_MIN_IMAGES = 4000  # below this a pool costs more than it saves
MAX_WORKERS = 4


@dataclass
class Decoded:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    kind: str  # "pickle batches", "CIFAR-100 batches (fine labels)" or "image folder"


# ---------------------------------------------------------------- pickle batches

class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of numpy arrays and lists) and nothing else."""

    _reconstruct = np.ndarray.__reduce__(np.empty(0))[0]  # numpy's array rebuild helper

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return self._reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":  # how Python 3 writes bytes at protocol 2
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(blob: bytes, where: str) -> dict:
    try:
        obj = _BatchUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure means "not a CIFAR batch"
        raise DataError(f"{where}: not a CIFAR-10 python batch ({e}); {LAYOUT_HELP}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a CIFAR-10 python batch (a {type(obj).__name__}, "
                        f"not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _labels(labels, where: str) -> np.ndarray:
    """The 'labels' of a batch as int64, or a DataError saying what they are instead."""
    if isinstance(labels, (list, tuple)):
        bad = next((v for v in labels if isinstance(v, bool) or not isinstance(v, (int, np.integer))), None)
        if bad is not None:
            raise DataError(f"{where}: 'labels' holds {type(bad).__name__} {_short(bad)}, expected integers "
                            "0..9: not a CIFAR-10 batch (re-download it)")
        try:
            labels = np.array(labels, dtype=np.int64)
        except OverflowError:
            raise DataError(f"{where}: 'labels' holds integers out of range, expected 0..9") from None
    if not isinstance(labels, np.ndarray):
        raise DataError(f"{where}: 'labels' is a {type(labels).__name__}, expected a list of integers "
                        "0..9: not a CIFAR-10 batch")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer) or labels.ndim > 1:
        raise DataError(f"{where}: 'labels' are {labels.dtype} {labels.shape}, expected a list of integers "
                        "0..9: not a CIFAR-10 batch")
    return labels.astype(np.int64).reshape(-1)


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _batch_arrays(blob: bytes, where: str, label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(blob, where)
    data, labels = d.get("data"), d.get(label_key)
    if data is None or labels is None:
        hint = ("; a CIFAR-100 file? give the cifar-100-python folder or its archive" if "fine_labels" in d
                else "")
        raise DataError(f"{where}: batch without 'data' and {label_key!r} keys "
                        f"(has {sorted(map(str, d))}){hint}")
    if not isinstance(data, np.ndarray):
        raise DataError(f"{where}: 'data' is a {type(data).__name__}, expected a uint8 array (N, 3072)")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    labels = _labels(labels, where)
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {labels.size} labels for {len(data)} images")
    # rows are planar: 1024 red, 1024 green, 1024 blue values
    x = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return x, labels


def from_batches(blobs: dict[str, bytes], where: str) -> Decoded:
    """Build arrays from the raw bytes of the 7 files of ``cifar-10-batches-py``."""
    missing = [n for n in (*BATCH_NAMES, META_NAME) if n not in blobs]
    if missing:
        raise DataError(f"{where}: {', '.join(missing)} missing: a cifar-10-batches-py folder "
                        f"holds data_batch_1..5, test_batch and batches.meta (re-download it)")
    meta = _unpickle(blobs[META_NAME], f"{where}/{META_NAME}")
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{where}/{META_NAME}: no 'label_names' list")
    classes = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
    check_classes(classes, f"{where}/{META_NAME}", "label_names")
    parts = [_batch_arrays(blobs[n], f"{where}/{n}") for n in BATCH_NAMES]
    train_x = np.concatenate([p[0] for p in parts[:5]])
    train_y = np.concatenate([p[1] for p in parts[:5]])
    test_x, test_y = parts[5]
    for split, y in (("train", train_y), ("test", test_y)):
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise DataError(f"{where}: {split} label {bad} out of range for "
                            f"{len(classes)} classes in {META_NAME}")
    if classes != list(CLASSES):  # the ten names in another order: labels follow CIFAR-10's order
        order = np.array([CLASSES.index(c) for c in classes], np.int64)
        train_y, test_y, classes = order[train_y], order[test_y], list(CLASSES)
    return Decoded(train_x, train_y, test_x, test_y, classes, "pickle batches")


def read_batches_dir(folder: Path, progress: Progress | None = None) -> Decoded:
    blobs = {}
    names = (*BATCH_NAMES, META_NAME)
    for i, name in enumerate(names):
        if (folder / name).is_file():
            blobs[name] = (folder / name).read_bytes()
        if progress:
            progress(i + 1, len(names))
    return from_batches(blobs, str(folder))


def from_cifar100(blobs: dict[str, bytes], where: str, label_kind: str = "fine") -> Decoded:
    """Arrays from the raw bytes of ``cifar-100-python``'s train, test and meta files:
    the fine labels (100 classes) or, with ``label_kind="coarse"``, the 20 superclasses."""
    if label_kind not in LABEL_KINDS:
        raise DataError(f"data.label_kind {label_kind!r}: expected fine or coarse")
    missing = [n for n in C100_NAMES if n not in blobs]
    if missing:
        raise DataError(f"{where}: {', '.join(missing)} missing: a {C100_DIR} folder holds train, test "
                        "and meta (re-download it)")
    meta = _unpickle(blobs["meta"], f"{where}/meta")
    names = meta.get(f"{label_kind}_label_names")
    if not isinstance(names, list) or len(names) < 2:
        raise DataError(f"{where}/meta: no '{label_kind}_label_names' list: not CIFAR-100's meta file")
    classes = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
    if len(set(classes)) != len(classes):
        raise DataError(f"{where}/meta: '{label_kind}_label_names' holds a name twice")
    out = []
    for split in ("train", "test"):
        x, y = _batch_arrays(blobs[split], f"{where}/{split}", f"{label_kind}_labels")
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise DataError(f"{where}/{split}: label {bad} out of range for the {len(classes)} "
                            f"{label_kind} classes in meta")
        out += [x, y]
    return Decoded(*out, classes, f"CIFAR-100 batches ({label_kind} labels)")


def read_cifar100_dir(folder: Path, progress: Progress | None = None, label_kind: str = "fine") -> Decoded:
    blobs = {}
    for i, name in enumerate(C100_NAMES):
        if (folder / name).is_file():
            blobs[name] = (folder / name).read_bytes()
        if progress:
            progress(i + 1, len(C100_NAMES))
    return from_cifar100(blobs, str(folder), label_kind)


def _is_cifar100_dir(folder: Path) -> bool:
    return (folder / "meta").is_file() and (folder / "train").is_file()


# ---------------------------------------------------------------- image decoding

def decode_chunk(items: list[tuple[str, bytes | str]], size: int = 32) -> tuple[np.ndarray, str | None]:
    """Decode (name, bytes-or-path) pairs to (n, size, size, 3) RGB
    (:func:`cifarctl.data.images.decode`); stops at the first bad image and returns its message."""
    out = np.empty((len(items), size, size, 3), np.uint8)
    for i, (name, payload) in enumerate(items):
        arr, err = decode(name, payload, size)
        if err:
            return out[:i], err
        out[i] = arr
    return out, None


def _worker_init() -> None:
    """In each decode worker: Ctrl-C is the parent's to handle, and the worker dies with the
    parent however the parent dies (SIGTERM, SIGKILL): Linux's parent-death signal, so that
    no orphaned worker keeps its memory (~340 MB each) after the command is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


_ignore_sigint = _worker_init  # the old name


class _Decoder:
    """Decodes chunks as they are submitted, in a fork pool when one pays off.

    With ``expected`` unknown (a streamed archive) the pool starts at the first full chunk,
    so small archives never pay for it.
    """

    def __init__(self, expected: int | None, size: int = 32):
        self.size = size
        self.results: list[Future | tuple[np.ndarray, str | None]] = []
        self.pool = None
        self.expected = expected
        self.workers = min(os.cpu_count() or 1, MAX_WORKERS)

    def _want_pool(self, n: int) -> bool:
        big = self.expected >= POOL_MIN_IMAGES if self.expected is not None else n >= CHUNK
        # fork: workers need no re-import of __main__, so scripts without a main guard work;
        # daemonic processes (DataLoader workers, pools) may not have children
        return (big and self.workers > 1 and not multiprocessing.current_process().daemon
                and "fork" in multiprocessing.get_all_start_methods())

    def submit(self, items: list) -> None:
        if self.pool is None and not self.results and self._want_pool(len(items)):
            for stream in (sys.stdout, sys.stderr):  # else forked workers flush them again
                try:
                    stream.flush()
                except (AttributeError, OSError, ValueError):
                    pass
            self.pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("fork"),
                                            initializer=_worker_init)
        if self.pool is not None:
            self.results.append(self.pool.submit(decode_chunk, items, self.size))
        else:
            self.results.append(decode_chunk(items, self.size))
            self.check(self.results[-1])

    @staticmethod
    def check(result) -> None:
        if result[1]:
            raise DataError(result[1])

    def finish(self) -> np.ndarray:
        arrays = []
        for r in self.results:
            r = r.result() if isinstance(r, Future) else r
            self.check(r)
            arrays.append(r[0])
        return np.concatenate(arrays) if arrays else np.empty((0, self.size, self.size, 3), np.uint8)

    def close(self, failed: bool = False) -> None:
        """Shut the pool down; after an error or a signal (``failed``), stop the workers now
        rather than let them finish their chunks."""
        if self.pool is None:
            return
        pool, self.pool = self.pool, None
        if failed:
            procs = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                try:
                    proc.terminate()
                except (OSError, ValueError, AttributeError):
                    pass
            for proc in procs:
                try:
                    proc.join(5)
                except (OSError, ValueError, AttributeError, AssertionError):
                    pass
        else:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(failed=exc_type is not None)


# ---------------------------------------------------------------- image folders

def _image_key(parts: list[str]) -> tuple[str, str, str, str] | None:
    """(prefix, split, class, file) for train/<c>/<f> or <top>/train/<c>/<f>, else None."""
    if any(p.startswith(".") for p in parts):
        return None  # hidden files: .DS_Store, ._foo.jpg
    if len(parts) == 3 and parts[0] in SPLITS:
        return ("", *parts)
    if len(parts) == 4 and parts[1] in SPLITS:
        return tuple(parts)
    return None


def check_classes(classes, where: str, what: str = "class folders") -> None:
    """DataError unless ``classes`` are exactly CIFAR-10's ten (in any order), naming the
    extra and the missing ones: models have ten outputs, so an 11th class is a label out
    of range two epochs into training."""
    got = [str(c) for c in classes]
    if sorted(got) == sorted(CLASSES):
        return
    extra = sorted(set(got) - set(CLASSES))
    missing = [c for c in CLASSES if c not in set(got)]
    twice = sorted({c for c in got if got.count(c) > 1})
    parts = ([f"extra: {', '.join(repr(c[:40]) for c in extra[:10])}" + (" ..." if len(extra) > 10 else "")]
             if extra else []) + ([f"missing: {', '.join(missing)}"] if missing else []) + \
        ([f"twice: {', '.join(twice)}"] if twice else [])
    raise DataError(f"{where}: the {what} are not CIFAR-10's ten classes ({'; '.join(parts)}): expected "
                    f"exactly {', '.join(CLASSES)}")


def _class_order(train: set[str], test: set[str], where: str) -> list[str]:
    if not train or not test:
        empty = " and ".join(s + "/" for s, c in (("train", train), ("test", test)) if not c)
        raise DataError(f"{where}: no images in {empty} class folders: {LAYOUT_HELP} "
                        f"(optionally inside one top-level folder)")
    for a, b, sa, sb in ((train, test, "train", "test"), (test, train, "test", "train")):
        if a - b:
            raise DataError(f"{where}: class folder(s) {', '.join(sorted(a - b))} in {sa}/ but "
                            f"not in {sb}/: train/ and test/ need the same class folders")
    if sorted(train) == sorted(CLASSES):  # CIFAR-10 as images: its labels keep CIFAR-10's order
        return list(CLASSES)
    if len(train) < 2:
        raise DataError(f"{where}: only one class folder ({', '.join(train)}): a classifier needs at least "
                        "two, train/<class>/ and test/<class>/ for each")
    return sorted(train)


def _assemble(keys: list[tuple[str, str, str, str]], x: np.ndarray, where: str) -> Decoded:
    prefixes = {k[0] for k in keys}
    if len(prefixes) > 1:
        raise DataError(f"{where}: train/ and test/ found under several folders "
                        f"({', '.join(sorted(p or '.' for p in prefixes))}): keep one layout")
    by_split = {s: {k[2] for k in keys if k[1] == s} for s in SPLITS}
    classes = _class_order(by_split["train"], by_split["test"], where)
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for split in SPLITS:
        rows = [(index[k[2]], k[3], i) for i, k in enumerate(keys) if k[1] == split]
        rows.sort()
        order = np.fromiter((r[2] for r in rows), np.int64, len(rows))
        labels = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        if len(order) and order[-1] - order[0] == len(order) - 1 and (np.diff(order) == 1).all():
            out += [x[order[0]:order[-1] + 1], labels]  # already in order: a view, no copy
        else:
            out += [x[order], labels]
    return Decoded(*out, classes, "image folder")


def _find_image_root(folder: Path) -> Path | None:
    if all((folder / s).is_dir() for s in SPLITS):
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) == 1 and all((subs[0] / s).is_dir() for s in SPLITS):
        return subs[0]
    return None


def link_problem(path: str | os.PathLike) -> str | None:
    """'dangling symbolic link' / 'symbolic link loop' for a link that leads nowhere, else None."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as exc:

        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"dangling symbolic link (to {os.readlink(path)!r})"
    return None


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder``, sorted; a link that leads nowhere is a DataError naming it."""
    out = []
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if e.name.startswith("."):
            continue
        bad = link_problem(e.path)
        if bad:
            raise DataError(f"{e.path}: {bad}: remove it or fix what it points to")
        out.append(e)
    return out


def read_image_dir(root: Path, progress: Progress | None = None, size: int = 32) -> Decoded:
    """Read ``root/train/<class>/*`` and ``root/test/<class>/*``."""
    keys, items = [], []
    for split in SPLITS:
        for cdir in (Path(e.path) for e in _entries(root / split) if e.is_dir()):
            for f in _entries(cdir):
                key = _image_key([split, cdir.name, f.name])
                if key and f.is_file():
                    keys.append(key)
                    items.append((f.path, f.path))
    with _Decoder(len(items), size) as decoder:
        for start in range(0, len(items), CHUNK):
            decoder.submit(items[start:start + CHUNK])
            if progress and decoder.pool is None:
                progress(min(start + CHUNK, len(items)), len(items))
        x = _finish_with_progress(decoder, len(items), progress)
    return _assemble(keys, x, str(root))


def _finish_with_progress(decoder: _Decoder, total: int, progress: Progress | None) -> np.ndarray:
    if progress and decoder.pool is not None:
        done = 0
        for r in decoder.results:
            done += len(r.result()[0])
            progress(done, total)
    x = decoder.finish()
    if progress:
        progress(total, total)
    return x


# ---------------------------------------------------------------- archives

MAX_IMAGE_BYTES = 32 << 20   # an image of a classification data set is far smaller
MAX_BATCH_BYTES = 192 << 20  # a cifar-10-batches-py file is ~31 MB, cifar-100-python/train ~155 MB


def _members(tf: tarfile.TarFile) -> Iterator[tuple[str, tarfile.TarInfo]]:
    for m in tf:
        if m.isfile():
            name = m.name[2:] if m.name.startswith("./") else m.name
            yield name, m


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo, where: str, limit: int) -> bytes:
    """A member's bytes, refused before reading when it declares more than ``limit`` (a
    sparse member can declare 50 GB in a 193 KB archive)."""
    if member.size > limit:
        raise DataError(f"{where}: declares {member.size:,} bytes, more than any file of a data set "
                        f"({limit:,} at most): not a data archive")
    return tf.extractfile(member).read()


_MAGIC = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb"), "gzip"),
          (b"\xfd7zXZ\x00", lambda f: lzma.LZMAFile(f, "rb"), "xz"),
          (b"BZh", lambda f: bz2.BZ2File(f, "rb"), "bzip2"))


def _decompressed(raw):
    """(stream, kind): ``raw`` through the decompressor its first bytes call for (Python's own
    file classes, which check the CRC / integrity check when read to the end), or ``raw``."""
    head = raw.read(6)
    raw.seek(0)
    for magic, cls, kind in _MAGIC:
        if head.startswith(magic):
            return cls(raw), kind
    return raw, "tar"


def _read_to_end(stream) -> None:
    """Read what is left of the (decompressed) stream, so its trailer checksum is verified:
    tarfile stops at the tar end-of-archive blocks, before the gzip CRC."""
    while stream.read(1 << 20):
        pass


def read_archive(path: Path, progress: Progress | None = None, side: int = 32, label_kind: str = "fine") -> Decoded:
    """Stream a tar archive holding an image folder or a ``cifar-10-batches-py`` folder.

    The compressed stream is read to its end (checksums verified) before the images are
    used. ``progress(done, total)`` counts compressed bytes read, the only measure known up front.
    """
    size = path.stat().st_size
    keys, chunk, batches, c100 = [], [], {}, {}
    seen = 0
    kind = "tar"
    decoder = _Decoder(None, side)
    failed = True
    try:
        with open(path, "rb") as raw:
            stream, kind = _decompressed(raw)
            with stream, tarfile.open(fileobj=stream, mode="r|") as tf:
                last = 0
                for name, member in _members(tf):
                    seen += 1
                    parts = name.split("/")
                    key = _image_key(parts)
                    if key:
                        keys.append(key)
                        chunk.append((f"{path}:{name}", _read_member(tf, member, f"{path}:{name}",
                                                                     MAX_IMAGE_BYTES)))
                        if len(chunk) == CHUNK:
                            decoder.submit(chunk)
                            chunk = []
                    elif parts[-1] in (*BATCH_NAMES, META_NAME) and len(parts) <= 3:
                        batches[parts[-1]] = _read_member(tf, member, f"{path}:{name}", MAX_BATCH_BYTES)
                    elif parts[-1] in C100_NAMES and (len(parts) == 1 or parts[-2] == C100_DIR):
                        c100[parts[-1]] = _read_member(tf, member, f"{path}:{name}", MAX_BATCH_BYTES)
                    if progress and raw.tell() - last > size // 100:
                        last = raw.tell()
                        progress(last, size)
                _read_to_end(stream)
        if chunk:
            decoder.submit(chunk)
        x = decoder.finish()
        failed = False
    except tarfile.ReadError as e:
        if seen:
            raise DataError(f"{path}: archive is truncated ({e}); copy or download it "
                            f"again") from None
        if kind != "tar":
            raise DataError(f"{path}: {kind} data that is not a tar archive ({e}): {LAYOUT_HELP}") from None
        raise DataError(f"{path}: not a folder or a readable tar archive: {LAYOUT_HELP}") from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
        why = str(e) or type(e).__name__
        if isinstance(e, gzip.BadGzipFile) or "CRC" in why or "check" in why.lower():
            why = f"checksum error: {why}"
        raise DataError(f"{path}: archive is truncated or corrupt ({why}); copy or download it "
                        f"again") from None
    finally:
        decoder.close(failed=failed)
    if progress:
        progress(size, size)
    if not keys and c100 and not batches:
        return from_cifar100(c100, f"{path}:{C100_DIR}", label_kind)
    if not keys and batches:
        return from_batches(batches, f"{path}:{BATCHES_DIR}")
    return _assemble(keys, x, str(path))


def read_path(path: Path, progress: Progress | None = None, size: int = 32, label_kind: str = "fine") -> Decoded:
    """Read any supported local layout (folder or archive) at ``path``; an image folder's
    images resized to ``size``, CIFAR-100's ``label_kind`` labels."""
    if path.is_dir():
        if (path / META_NAME).is_file() or (path / "data_batch_1").is_file():
            return read_batches_dir(path, progress)
        if (path / BATCHES_DIR).is_dir():
            return read_batches_dir(path / BATCHES_DIR, progress)
        if _is_cifar100_dir(path):
            return read_cifar100_dir(path, progress, label_kind)
        if _is_cifar100_dir(path / C100_DIR):
            return read_cifar100_dir(path / C100_DIR, progress, label_kind)
        root = _find_image_root(path)
        if root is None:
            raise DataError(f"{path}: no train/ and test/ folders found: {LAYOUT_HELP} "
                            f"(optionally inside one top-level folder)")
        return read_image_dir(root, progress, size)
    return read_archive(path, progress, side=size, label_kind=label_kind)
