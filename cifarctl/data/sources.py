"""Load CIFAR-10, CIFAR-100 or an image folder as uint8 numpy arrays, from wherever it is.

Sources, in :func:`load_cifar`'s ``source`` argument, else ``$CIFARCTL_DATA``, else
``"cifar10"``:

- ``"cifar10"`` / ``"cifar100"``: the official python archive in the cache folder,
  downloaded there (md5-checked) on first use; CIFAR-100's fine labels (100 classes) or,
  with ``label_kind="coarse"``, its 20 superclasses;
- a local path: a ``cifar-10-batches-py`` or ``cifar-100-python`` folder (or a folder
  holding one), their ``.tar.gz``, or an image folder ``train/<class>/*`` + ``test/<class>/*``
  (optionally inside one top-level folder; any number of classes, images of any size,
  resized to ``image_size``) as a folder or a ``.tar[.gz|.xz]``/``.tgz``;
- ``"synthetic"``, ``"synthetic:N"`` or ``"synthetic:N:M"``: N train / M test random
  images with per-class colour and texture, so a model can learn them (default 2000 / 500).

Decoded arrays are cached (see :mod:`cifarctl.data.cache`); subsets are drawn after.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from torchvision.datasets.utils import download_and_extract_archive

from cifarctl import CLASSES
from cifarctl.data import cache, readers
from cifarctl.errors import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_ARCHIVE = "cifar-100-python.tar.gz"
SYNTHETIC_DEFAULT = (2000, 500)
SYNTHETIC_MAX = 200_000   # images per split: 0.6 GB of uint8 (CIFAR-10 has 50,000 + 10,000)


@dataclass(repr=False)
class CifarArrays:
    """Images as uint8 (N, S, S, 3) RGB arrays and int64 labels indexing ``classes``."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    source: str           # what was read, for people: "image folder /data/cifar.tar.xz"
    cached: bool = False  # True when the arrays came from the decoded cache
    cache_written: bool = False  # True when they were just decoded and written to the cache

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (f"CifarArrays({len(self.train_y)} train, {len(self.test_y)} test, "
                f"{self.num_classes} classes, source={self.source!r}, cached={self.cached})")


def resolve_source(source: str | os.PathLike | None = None) -> str:
    """The source to use: the argument, else ``$CIFARCTL_DATA``, else ``"cifar10"``; a path
    that exists as its absolute path, so that a run folder names it from anywhere."""
    if source is not None and str(source) != "":
        text = os.fspath(source)
    else:
        text = os.environ.get("CIFARCTL_DATA") or "cifar10"
    if text in ("cifar10", "cifar100") or text.startswith("synthetic"):
        return text
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def load_cifar(
    source: str | os.PathLike | None = None,
    *,
    cache_dir: Path | None = None,
    progress: bool | Callable[[int, int], None] = True,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    image_size: int = 32,
    label_kind: str = "fine",
) -> CifarArrays:
    """Load a CIFAR-10 source as uint8 arrays (see the module docstring for sources).

    ``cache_dir`` defaults to ``$CIFARCTL_DATA_DIR`` or ``~/.cache/cifarctl``. ``progress``:
    True draws a bar on stderr when it is a terminal and the data has to be decoded; a
    callable gets ``(done, total)`` in one unit (files, batches, or compressed bytes for
    archives). ``train_subset``/``test_subset`` keep that many images, class-balanced,
    chosen by ``seed``. ``image_size``: the side an image folder's images are resized to
    (the CIFAR sources are 32x32 and refuse another); ``label_kind``: ``fine`` or ``coarse``
    (CIFAR-100 only). Raises :class:`~cifarctl.errors.DataError` with a fix.
    """
    spec = resolve_source(source)
    if label_kind not in readers.LABEL_KINDS:
        raise DataError(f"data.label_kind {label_kind!r}: expected fine or coarse")
    if spec.lower().split(":")[0] == "synthetic":  # keywords win: use ./synthetic for a folder
        data = synthetic(*_parse_synthetic(spec), seed=seed)
    else:
        cache_dir = Path(cache_dir).expanduser() if cache_dir else cache.default_cache_dir()
        if spec.lower() in ("cifar10", "cifar-10"):
            path = official_cifar10(cache_dir)
        elif spec.lower() in ("cifar100", "cifar-100"):
            path = official_cifar100(cache_dir)
        else:
            path = Path(os.path.expanduser(spec))
            if not path.exists():
                raise DataError(f"data path {path} does not exist: {readers.LAYOUT_HELP}")
            _check_kind(path)
        data = _load_path(path.resolve(), cache_dir, progress, image_size, label_kind)
    side = int(data.train_x.shape[1])
    if side != image_size:
        raise DataError(f"data.image_size {image_size}: the images of {data.source} are {side}x{side} and only an "
                        f"image folder is resized: set data.image_size: {side}")
    if label_kind == "coarse" and "CIFAR-100" not in data.source:
        raise DataError(f"data.label_kind coarse: {data.source} has no coarse labels (CIFAR-100 only): "
                        "set data.label_kind: fine")
    if train_subset is not None:
        data.train_x, data.train_y = _subset(data.train_x, data.train_y, train_subset,
                                             data.num_classes, seed, "train")
    if test_subset is not None:
        data.test_x, data.test_y = _subset(data.test_x, data.test_y, test_subset,
                                           data.num_classes, seed, "test")
    if train_subset is not None or test_subset is not None:
        data.source += (f" [subset: {len(data.train_y)} train / {len(data.test_y)} test, "
                        f"seed {seed}]")
    return data


def _check_kind(path: Path) -> None:
    """Refuse a device, FIFO or socket as a data source (``/dev/zero`` would be read for
    ever, a FIFO would hang): data is a file or a folder."""
    mode = os.stat(path).st_mode
    for test, kind in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            raise DataError(f"data path {path} is a {kind}, not a file or folder: {readers.LAYOUT_HELP}")


def _load_path(path: Path, cache_dir: Path, progress, size: int = 32, label_kind: str = "fine") -> CifarArrays:
    try:
        # the arrays depend on the size (image folders) and the labels (CIFAR-100): each has its cache file
        variant = "".join(([f"s{size}"] if size != 32 else []) + (["coarse"] if label_kind == "coarse" else []))
        cfile = cache.cache_file(cache_dir, path, variant)
        hit = cache.load(cfile)
        if hit is not None:
            return CifarArrays(hit["train_x"], hit["train_y"], hit["test_x"], hit["test_y"],
                               hit["classes"], hit["description"], cached=True)
        with _progress(progress, f"decoding {path.name}") as cb:
            d = readers.read_path(path, cb, size, label_kind)
    except OSError as exc:  # permissions, a folder that vanished, I/O errors: one line
        where = exc.filename or path
        raise DataError(f"{where}: cannot be read ({exc.strerror or exc}): {readers.LAYOUT_HELP}") from None
    description = f"{d.kind} {path}"
    arrays = {"train_x": d.train_x, "train_y": d.train_y, "test_x": d.test_x, "test_y": d.test_y}
    bad = cache.problems(arrays, d.classes)
    if bad:  # the readers check all of this; a reader that lets something through is not trusted
        raise DataError(f"{path}: the decoded data is inconsistent ({bad}); not used, not cached")
    written = cache.save(cfile, arrays, d.classes, description)
    return CifarArrays(**arrays, classes=d.classes, source=description, cache_written=written)


def source_key(source: str | os.PathLike | None) -> str | None:
    """What a run records of its data, to refuse resuming it on other data: for a path, the
    content key of :func:`cifarctl.data.cache.content_key` (the same data copied elsewhere
    has the same key); for ``synthetic``, its sizes; for ``cifar10``, the key of the
    downloaded copy. None when the source cannot be looked at (loading it reports why)."""
    spec = resolve_source(source)
    try:
        if spec.lower().split(":")[0] == "synthetic":
            n, m = _parse_synthetic(spec)
            return f"synthetic:{n}:{m}"
        if spec.lower() in ("cifar10", "cifar-10", "cifar100", "cifar-100"):
            cache_dir = cache.default_cache_dir()
            ten = spec.lower() in ("cifar10", "cifar-10")
            names = (readers.BATCHES_DIR, CIFAR10_ARCHIVE) if ten else (readers.C100_DIR, CIFAR100_ARCHIVE)
            found = [cache_dir / c for c in names if (cache_dir / c).exists()]
            return cache.content_key(found[0]) if found else spec.lower().replace("-", "")
        path = Path(os.path.expanduser(spec))
        return cache.content_key(path) if path.exists() else None
    except (DataError, OSError):
        return None


@contextmanager
def _progress(progress, label: str) -> Iterator[Callable[[int, int], None] | None]:
    if callable(progress):
        yield progress
    elif progress and sys.stderr.isatty():

        columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                   TimeElapsedColumn())
        # auto_refresh=False: no refresh thread, which could hold the stderr lock when the
        # decoder forks its workers; the reader reports every ~1%, which redraws the bar
        with Progress(*columns, console=Console(stderr=True), transient=True,
                      auto_refresh=False) as bar:
            task = bar.add_task(label, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total, refresh=True)
    else:
        yield None


# ---------------------------------------------------------------- official archive

def official_cifar10(cache_dir: Path) -> Path:
    """The official python-format CIFAR-10 in ``cache_dir``, downloaded there if absent.

    The batches are pickles: they are read with a restricted unpickler that only
    rebuilds numpy arrays (:mod:`cifarctl.data.readers`), never with plain ``pickle``.
    """
    return _official(cache_dir, "CIFAR-10", CIFAR10_URL, CIFAR10_ARCHIVE, CIFAR10_MD5, readers.BATCHES_DIR)


def official_cifar100(cache_dir: Path) -> Path:
    """The official python-format CIFAR-100 in ``cache_dir``, downloaded there (md5-checked) if absent."""
    return _official(cache_dir, "CIFAR-100", CIFAR100_URL, CIFAR100_ARCHIVE, CIFAR100_MD5, readers.C100_DIR)


def _official(cache_dir: Path, name: str, url: str, archive: str, md5: str, folder: str) -> Path:
    for candidate in (cache_dir / folder, cache_dir / archive):
        if candidate.exists():
            return candidate
    # download and extract into a temp folder and move the result in only when complete,
    # so an interrupted or failed download never leaves a half archive in the cache
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_dir))
    except OSError as e:
        raise DataError(f"cannot create the data cache folder {cache_dir} ({e.strerror or e}): "
                        f"set CIFARCTL_DATA_DIR to a writable folder") from None
    try:
        _download_and_extract(url, tmp, archive, md5)
        os.replace(tmp / folder, cache_dir / folder)
    except OSError:  # URLError, timeouts, refused connections, disk full
        raise DataError(
            f"cannot download {name} (no network?): put {archive} in {cache_dir}, or "
            f"pass --data PATH / set CIFARCTL_DATA=PATH to that archive, a {folder} "
            f"folder, or an image folder/archive with train/<class>/ and test/<class>/") from None
    except RuntimeError as e:  # torchvision: "File not found or corrupted." (md5 mismatch)
        raise DataError(f"the downloaded {archive} failed its md5 check ({e}): try "
                        f"again, or put a good copy at {cache_dir / archive}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache_dir / folder


def _download_and_extract(url: str, folder: Path, filename: str, md5: str) -> None:


    # urllib waits forever by default where a firewall drops packets: fail after 60 s idle
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)
    try:
        download_and_extract_archive(url, folder, filename=filename, md5=md5)
    finally:
        socket.setdefaulttimeout(old)


# ---------------------------------------------------------------- synthetic

def _parse_synthetic(spec: str) -> tuple[int, int]:
    parts = spec.split(":")
    try:
        if parts[0].lower() != "synthetic" or len(parts) > 3:
            raise ValueError
        nums = [int(p) for p in parts[1:]]
        if any(n <= 0 for n in nums):
            raise ValueError
    except ValueError:
        raise DataError(f"bad synthetic source {spec!r}: expected synthetic, synthetic:N or "
                        f"synthetic:N:M (N train and M test images, positive integers)") from None
    if any(n > SYNTHETIC_MAX for n in nums):
        raise DataError(f"synthetic source {spec!r}: at most {SYNTHETIC_MAX:,} images per split "
                        f"({max(nums):,} asked for; CIFAR-10 itself has 50,000 + 10,000)")
    if not nums:
        return SYNTHETIC_DEFAULT
    return nums[0], nums[1] if len(nums) > 1 else max(10, nums[0] // 4)


def synthetic(n_train: int = SYNTHETIC_DEFAULT[0], n_test: int = SYNTHETIC_DEFAULT[1],
              seed: int = 0) -> CifarArrays:
    """Random images a model can learn, but not at once: each class has its own mean colour
    and stripe pattern (orientation, frequency) under per-image brightness jitter and strong
    pixel noise (a nearest-class-mean classifier gets ~77%, colour alone ~50%, chance 10%).
    Deterministic in ``seed``; 1 to :data:`SYNTHETIC_MAX` images per split."""
    for what, n in (("train", n_train), ("test", n_test)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= SYNTHETIC_MAX:
            raise DataError(f"synthetic data: {what} size {n!r} must be 1..{SYNTHETIC_MAX:,} images")
    k = len(CLASSES)
    rng = np.random.default_rng([seed, 0])
    colours = rng.uniform(90, 165, (k, 3)).astype(np.float32)
    angle = rng.uniform(0, np.pi, k)
    freq = rng.uniform(0.2, 0.8, k)
    yy, xx = np.mgrid[0:32, 0:32]
    stripes = 30 * np.sin(freq[:, None, None] * (np.cos(angle)[:, None, None] * xx
                                                 + np.sin(angle)[:, None, None] * yy))
    stripes = stripes.astype(np.float32)[..., None]  # (k, 32, 32, 1)

    def split(n: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        r = np.random.default_rng([seed, stream])
        y = r.permutation(np.arange(n) % k).astype(np.int64)
        x = np.empty((n, 32, 32, 3), np.uint8)
        for s in range(0, n, 4096):  # float32 chunks keep memory flat for large n
            yc = y[s:s + 4096]
            img = colours[yc][:, None, None, :] + stripes[yc]
            img += r.standard_normal((len(yc), 1, 1, 1), dtype=np.float32) * 40  # brightness
            img += r.standard_normal(img.shape, dtype=np.float32) * 80
            x[s:s + 4096] = np.clip(img, 0, 255).astype(np.uint8)
        return x, y

    train_x, train_y = split(n_train, 1)
    test_x, test_y = split(n_test, 2)
    return CifarArrays(train_x, train_y, test_x, test_y, list(CLASSES),
                       f"synthetic ({n_train} train / {n_test} test, seed {seed})")


# ---------------------------------------------------------------- subsets and stats

def balanced_indices(y: np.ndarray, n: int, num_classes: int,
                     seed: int | list[int] = 0) -> np.ndarray:
    """Sorted indices of ``n`` items of ``y``, as even across classes as the data allows."""
    counts = np.bincount(y, minlength=num_classes)
    quota = np.zeros_like(counts)
    left = min(n, int(counts.sum()))
    while left > 0:
        open_ = np.flatnonzero(quota < counts)
        per = max(1, left // len(open_))
        for c in open_:
            add = min(per, int(counts[c] - quota[c]), left)
            quota[c] += add
            left -= add
            if left == 0:
                break
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(y == c), int(q), replace=False)
              for c, q in enumerate(quota) if q]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, np.int64)


def hold_out(data: CifarArrays, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Take ``n`` class-balanced train images (drawn with ``seed``) out of ``data`` as a
    validation split: ``(val_x, val_y)``; ``data`` keeps the rest for training."""
    if n >= len(data.train_y):
        raise DataError(f"data.val_split {n:,} leaves no train images (there are {len(data.train_y):,}): "
                        "use fewer")
    idx = balanced_indices(data.train_y, int(n), data.num_classes, seed=[seed, 2])
    keep = np.ones(len(data.train_y), dtype=bool)
    keep[idx] = False
    val_x, val_y = data.train_x[idx], data.train_y[idx]
    data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
    return val_x, val_y


def _subset(x, y, n, num_classes, seed, split):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise DataError(f"{split}_subset must be a positive number of images, got {n!r}")
    if n >= len(y):
        return x, y
    idx = balanced_indices(y, int(n), num_classes, seed=[seed, 0 if split == "train" else 1])
    return x[idx], y[idx]


def channel_stats(x: np.ndarray) -> dict[str, tuple[float, ...]]:
    """Per-channel mean, std, min and max of uint8 images (..., C), scaled to [0, 1].

    Exact: integer sums of the values and of their squares (uint64), then float64. The
    images are read as rows of 256 pixels, so each reduction adds whole contiguous rows
    (no strided per-channel pass).
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"channel_stats expects uint8 images, got {x.dtype}")
    c = x.shape[-1]
    flat = np.ascontiguousarray(x).reshape(-1)
    n = flat.size // c
    if n == 0:
        raise ValueError("channel_stats needs at least one image")
    width = c * 256
    rows = flat.size // width
    body = flat[: rows * width].reshape(rows, width)
    total = np.zeros(width, np.uint64)
    squares = np.zeros(width, np.uint64)
    lo = np.full(width, 255, np.uint8)
    hi = np.zeros(width, np.uint8)
    for r in range(0, rows, 4096):
        block = body[r:r + 4096]
        total += block.sum(axis=0, dtype=np.uint64)
        wide = block.astype(np.uint16)  # 255 * 255 fits
        np.multiply(wide, wide, out=wide)
        squares += wide.sum(axis=0, dtype=np.uint64)
        np.minimum(lo, block.min(axis=0), out=lo)
        np.maximum(hi, block.max(axis=0), out=hi)
    tail = flat[rows * width:].reshape(-1, c).astype(np.uint64)
    sums = total.reshape(-1, c).sum(axis=0) + tail.sum(axis=0)
    sq = squares.reshape(-1, c).sum(axis=0) + (tail * tail).sum(axis=0)
    # lo/hi start at 255/0, neutral for min/max when there is no whole row
    lows = np.concatenate([lo.reshape(-1, c), tail]).min(axis=0)
    highs = np.concatenate([hi.reshape(-1, c), tail]).max(axis=0)
    mean = sums.astype(np.float64) / n / 255
    std = np.sqrt(np.maximum(sq.astype(np.float64) / n / (255 * 255) - mean * mean, 0))
    as_tuple = lambda a: tuple(float(t) for t in a)  # noqa: E731
    return {"mean": as_tuple(mean), "std": as_tuple(std), "min": as_tuple(lows / 255), "max": as_tuple(highs / 255)}


def data_summary(data: CifarArrays) -> dict:
    """Counts per class per split and each split's channel stats, as plain data (``cifarctl data --json``).

    ``train_stats`` are what a recipe normalises with; ``test_stats`` show how far the test
    split's differ."""
    counts = {}
    for split, y in (("train", data.train_y), ("test", data.test_y)):
        n = np.bincount(y, minlength=data.num_classes)
        counts[split] = {c: int(k) for c, k in zip(data.classes, n)}
    stats = channel_stats(data.train_x) if len(data.train_y) else None
    test_stats = channel_stats(data.test_x) if len(data.test_y) else None
    return {
        "source": data.source,
        "cached": data.cached,
        "cache_written": data.cache_written,
        "classes": list(data.classes),
        "train": int(len(data.train_y)),
        "test": int(len(data.test_y)),
        "counts": counts,
        "train_stats": {k: list(v) for k, v in stats.items()} if stats else None,
        "test_stats": {k: list(v) for k, v in test_stats.items()} if test_stats else None,
    }


def sample_indices(labels: np.ndarray, num_classes: int, n: int) -> list[int]:
    """Up to ``n`` indices, one per class in class order, then a second round, ..."""
    per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    out: list[int] = []
    rnd = 0
    while len(out) < n and any(len(p) > rnd for p in per_class):
        out += [int(p[rnd]) for p in per_class if len(p) > rnd][: n - len(out)]
        rnd += 1
    return out
