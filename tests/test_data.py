"""cifarctl.data: readers (pickle batches, image folders, archives), errors, cache,
synthetic data, subsets, the offline cifar10 source, and the `data` command."""

from __future__ import annotations

import io
import json
import logging
import pickle
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
from PIL import Image

from cifarctl import CLASSES
from cifarctl.data import CifarArrays, channel_stats, load_cifar, readers, sources
from cifarctl.errors import DataError

from helpers import shared_archive


# ---------------------------------------------------------------- fixture writers

def _images(rng, n, size=32, channels=3):
    shape = (n, size, size, channels) if channels > 1 else (n, size, size)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_batches(root: Path, seed: int = 0) -> dict:
    """A tiny cifar-10-batches-py folder (3 images per data batch, 4 in test_batch)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in (*readers.BATCH_NAMES,):
        n = 4 if name == "test_batch" else 3
        x = _images(rng, n)
        y = rng.integers(0, 10, n).tolist()
        planar = x.transpose(0, 3, 1, 2).reshape(n, 3072)  # official layout: R plane, G, B
        batch = {b"batch_label": name.encode(), b"labels": y, b"data": planar,
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        xs.append(x)
        ys.append(y)
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {"train_x": np.concatenate(xs[:5]), "train_y": np.concatenate(ys[:5]),
            "test_x": xs[5], "test_y": np.array(ys[5]), "folder": folder}


def write_image_folder(root: Path, classes=CLASSES, n_train=3, n_test=2,
                       seed: int = 1) -> dict:
    """train/<class>/NNNN.png + test/<class>/NNNN.png with random pixels (PNG: lossless);
    labels follow CIFAR-10's class order (the only class set a source may have)."""
    rng = np.random.default_rng(seed)
    expected = {}
    order = [c for c in CLASSES if c in classes] + sorted(c for c in classes if c not in CLASSES)
    for split, n in (("train", n_train), ("test", n_test)):
        xs, ys = [], []
        for label, cls in enumerate(order):
            (root / split / cls).mkdir(parents=True)
            for i, img in enumerate(_images(rng, n)):
                Image.fromarray(img).save(root / split / cls / f"{i:04d}.png")
                xs.append(img)
                ys.append(label)
        expected[f"{split}_x"], expected[f"{split}_y"] = np.stack(xs), np.array(ys)
    expected["classes"] = order
    return expected


def make_tar(src: Path, dest: Path, arcname: str, mode: str) -> Path:
    with tarfile.open(dest, mode) as tf:
        tf.add(src, arcname=arcname)
    return dest


def assert_same(data: CifarArrays, expected: dict) -> None:
    for k in ("train_x", "train_y", "test_x", "test_y"):
        got, want = getattr(data, k), expected[k]
        assert got.shape == want.shape, k
        assert got.dtype == (np.uint8 if k.endswith("x") else np.int64), k
        np.testing.assert_array_equal(got, want, err_msg=k)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("CIFARCTL_DATA_DIR", str(d))
    monkeypatch.delenv("CIFARCTL_DATA", raising=False)
    return d


# ---------------------------------------------------------------- (1) pickle batches

def test_pickle_batches_folder_and_parent_and_targz(tmp_path, cache_dir):
    expected = write_batches(tmp_path / "src")
    for source in (expected["folder"], tmp_path / "src",
                   make_tar(expected["folder"], tmp_path / "cifar-10-python.tar.gz",
                            "cifar-10-batches-py", "w:gz")):
        data = load_cifar(source, cache_dir=cache_dir, progress=False)
        assert_same(data, expected)
        assert data.classes == list(CLASSES)
        assert "pickle batches" in data.source


def test_pickle_refuses_arbitrary_objects(tmp_path, cache_dir):
    expected = write_batches(tmp_path)
    evil = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [Path("/")]})
    (expected["folder"] / "data_batch_2").write_bytes(evil)
    with pytest.raises(DataError, match="data_batch_2.*not a CIFAR-10 python batch"):
        load_cifar(expected["folder"], cache_dir=cache_dir, progress=False)


def test_pickle_missing_batch_named(tmp_path, cache_dir):
    expected = write_batches(tmp_path)
    (expected["folder"] / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 missing"):
        load_cifar(expected["folder"], cache_dir=cache_dir, progress=False)


# ---------------------------------------------------------------- (2) image folders

def test_image_folder_and_archives_pixel_exact(tmp_path, cache_dir):
    expected = write_image_folder(tmp_path / "set")
    sources_ = [
        tmp_path / "set",
        make_tar(tmp_path / "set", tmp_path / "set.tar.xz", "myset", "w:xz"),  # one top folder
        make_tar(tmp_path / "set", tmp_path / "flat.tar", ".", "w"),          # ./train/...
        make_tar(tmp_path / "set", tmp_path / "set.tgz", "", "w:gz"),
    ]
    for source in sources_:
        data = load_cifar(source, cache_dir=cache_dir, progress=False)
        assert data.classes == list(CLASSES), source
        assert_same(data, expected)
        assert data.source.startswith("image folder")


def test_folder_with_one_top_level_folder(tmp_path, cache_dir):
    expected = write_image_folder(tmp_path / "outer" / "inner")
    assert_same(load_cifar(tmp_path / "outer", cache_dir=cache_dir, progress=False), expected)


def test_decode_pool_path_matches_serial(tmp_path, cache_dir, monkeypatch):
    expected = write_image_folder(tmp_path / "set", n_train=5, n_test=3)
    archive = make_tar(tmp_path / "set", tmp_path / "set.tar.gz", "", "w:gz")
    monkeypatch.setattr(readers, "POOL_MIN_IMAGES", 0)
    monkeypatch.setattr(readers, "CHUNK", 2)
    calls = []
    for source in (tmp_path / "set", archive):
        data = load_cifar(source, cache_dir=cache_dir, progress=lambda d, t: calls.append((d, t)))
        assert_same(data, expected)
    assert calls
    assert calls[-1][0] == calls[-1][1]  # the last call says "done"


# ---------------------------------------------------------------- (3) errors

def test_missing_path(tmp_path, cache_dir):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as e:
        load_cifar(missing, cache_dir=cache_dir)
    assert str(missing) in str(e.value)
    assert "train/<class>/" in str(e.value)
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2


def test_wrong_layout(tmp_path, cache_dir):
    (tmp_path / "bad" / "images").mkdir(parents=True)
    (tmp_path / "bad" / "images" / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="no train/ and test/") as e:
        load_cifar(tmp_path / "bad", cache_dir=cache_dir)
    assert str(tmp_path / "bad") in str(e.value)
    archive = make_tar(tmp_path / "bad", tmp_path / "bad.tar", "bad", "w")
    with pytest.raises(DataError, match="no images in train/ and test/"):
        load_cifar(archive, cache_dir=cache_dir)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not a folder or a readable tar archive"):
        load_cifar(tmp_path / "notes.txt", cache_dir=cache_dir)


def _bad_image_cases():
    rng = np.random.default_rng(3)
    good = io.BytesIO()
    Image.fromarray(_images(rng, 1)[0]).save(good, "JPEG")
    return [
        ("bad.jpg", b"\xff\xd8\xff\xe0 definitely not a jpeg", "cannot decode image"),
        ("cut.jpg", good.getvalue()[: len(good.getvalue()) // 2], "cannot decode image"),
    ]


def test_grey_and_other_sizes_are_converted_not_refused(tmp_path, cache_dir):
    """An image folder's grey image becomes RGB and a 28x28 one is resized to data.image_size."""
    rng = np.random.default_rng(3)
    write_image_folder(tmp_path / "set")
    Image.fromarray(_images(rng, 1, channels=1)[0], "L").save(tmp_path / "set" / "train" / "cat" / "zz-gray.png")
    Image.fromarray(_images(rng, 1, size=28)[0]).save(tmp_path / "set" / "train" / "cat" / "zz-small.png")
    data = load_cifar(tmp_path / "set", cache_dir=cache_dir, progress=False)
    cat = data.classes.index("cat")
    last_two = data.train_x[data.train_y == cat][-2:]
    assert last_two.shape == (2, 32, 32, 3)
    grey = last_two[0]
    assert (grey[..., 0] == grey[..., 1]).all()
    assert (grey[..., 1] == grey[..., 2]).all()


@pytest.mark.parametrize("name,blob,message", _bad_image_cases(), ids=lambda v: str(v)[:8])
@pytest.mark.parametrize("as_archive", [False, True], ids=["folder", "archive"])
def test_bad_image_named(tmp_path, cache_dir, name, blob, message, as_archive):
    write_image_folder(tmp_path / "set")
    (tmp_path / "set" / "train" / "cat" / name).write_bytes(blob)
    source = make_tar(tmp_path / "set", tmp_path / "s.tar.xz", "", "w:xz") if as_archive \
        else tmp_path / "set"
    with pytest.raises(DataError, match=message) as e:
        load_cifar(source, cache_dir=cache_dir, progress=False)
    text = str(e.value)
    assert f"train/cat/{name}" in text
    assert "\n" not in text
    assert (f"{source}:" in text) if as_archive else (str(source / "train" / "cat") in text)
    assert not list((cache_dir / "decoded").glob("*")) if (cache_dir / "decoded").exists() else True


def test_bad_image_through_pool(tmp_path, cache_dir, monkeypatch):
    write_image_folder(tmp_path / "set", n_train=4)
    (tmp_path / "set" / "test" / "airplane" / "zz.jpg").write_bytes(b"garbage")
    monkeypatch.setattr(readers, "POOL_MIN_IMAGES", 0)
    monkeypatch.setattr(readers, "CHUNK", 2)
    with pytest.raises(DataError, match=r"test/airplane/zz\.jpg: cannot decode image"):
        load_cifar(tmp_path / "set", cache_dir=cache_dir, progress=False)


def test_class_missing_from_test(tmp_path, cache_dir):
    write_image_folder(tmp_path / "set")
    for f in (tmp_path / "set" / "test" / "cat").iterdir():
        f.unlink()
    (tmp_path / "set" / "test" / "cat").rmdir()
    for source in (tmp_path / "set", make_tar(tmp_path / "set", tmp_path / "s.tar", "", "w")):
        with pytest.raises(DataError, match=r"cat in train/ but not in test/") as e:
            load_cifar(source, cache_dir=cache_dir, progress=False)
        assert str(source) in str(e.value)


def test_truncated_archive(tmp_path, cache_dir):
    write_image_folder(tmp_path / "set")
    archive = make_tar(tmp_path / "set", tmp_path / "s.tar.xz", "", "w:xz")
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated") as e:
        load_cifar(archive, cache_dir=cache_dir, progress=False)
    assert str(archive) in str(e.value)


# ---------------------------------------------------------------- (4) cache

def _count_reads(monkeypatch) -> list:
    calls = []
    real = readers.read_path

    def counting(path, progress=None, *args):
        calls.append(path)
        return real(path, progress, *args)

    monkeypatch.setattr(readers, "read_path", counting)
    return calls


def test_second_load_hits_cache(tmp_path, cache_dir, monkeypatch):
    expected = write_image_folder(tmp_path / "set")
    calls = _count_reads(monkeypatch)
    first = load_cifar(tmp_path / "set", cache_dir=cache_dir, progress=False)
    second = load_cifar(tmp_path / "set", cache_dir=cache_dir, progress=False)
    assert len(calls) == 1
    assert not first.cached
    assert second.cached
    assert_same(second, expected)
    assert second.classes == first.classes
    assert second.source == first.source
    files = sorted(p.name for p in (cache_dir / "decoded").iterdir())
    assert len(files) == 1
    assert files[0].endswith(".npz")  # no temp files left behind
    # changing the source invalidates the cache
    img = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "set" / "train" / "airplane" / "9999.png")
    third = load_cifar(tmp_path / "set", cache_dir=cache_dir, progress=False)
    assert len(calls) == 2
    assert not third.cached
    assert len(third.train_y) == len(first.train_y) + 1


def test_corrupt_cache_is_rebuilt(tmp_path, cache_dir, monkeypatch, caplog):
    expected = write_image_folder(tmp_path / "set")
    calls = _count_reads(monkeypatch)
    load_cifar(tmp_path / "set", cache_dir=cache_dir, progress=False)
    (cache_file,) = (cache_dir / "decoded").iterdir()
    cache_file.write_bytes(cache_file.read_bytes()[:200])  # truncated, as if by a full disk
    with caplog.at_level(logging.WARNING, logger="cifarctl.data"):
        data = load_cifar(tmp_path / "set", cache_dir=cache_dir, progress=False)
    assert len(calls) == 2
    assert not data.cached
    assert_same(data, expected)
    assert [r.getMessage() for r in caplog.records if str(cache_file) in r.getMessage()]
    assert load_cifar(tmp_path / "set", cache_dir=cache_dir, progress=False).cached


def test_killed_cache_write_leaves_nothing(tmp_path, cache_dir, monkeypatch):
    write_image_folder(tmp_path / "set")

    def dies_halfway(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        load_cifar(tmp_path / "set", cache_dir=cache_dir, progress=False)
    assert list((cache_dir / "decoded").iterdir()) == []


def test_unwritable_cache_still_loads(tmp_path, monkeypatch, caplog):
    expected = write_image_folder(tmp_path / "set")
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="cifarctl.data"):
        data = load_cifar(tmp_path / "set", cache_dir=blocker, progress=False)
    assert_same(data, expected)
    assert any("cannot write the data cache" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- (5) synthetic, (6) subsets

def test_synthetic_is_deterministic_and_learnable(monkeypatch):
    monkeypatch.delenv("CIFARCTL_DATA", raising=False)
    a, b = load_cifar("synthetic", seed=3), load_cifar("synthetic", seed=3)
    c = load_cifar("synthetic", seed=4)
    assert a.train_x.shape == (2000, 32, 32, 3)
    assert a.test_x.shape == (500, 32, 32, 3)
    assert a.train_y.dtype == np.int64
    assert a.classes == list(CLASSES)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)
    assert not np.array_equal(a.train_x, c.train_x)
    # a nearest-class-mean classifier beats chance (10%) by far
    means = np.stack([a.train_x[a.train_y == k].mean(0) for k in range(10)])
    d = ((a.test_x[:, None].astype(np.float32) - means[None]) ** 2).sum(axis=(2, 3, 4))
    assert (d.argmin(1) == a.test_y).mean() > 0.5
    s = load_cifar("synthetic:100:30")
    assert (len(s.train_y), len(s.test_y)) == (100, 30)
    assert len(load_cifar("synthetic:40").test_y) == 10
    with pytest.raises(DataError, match="bad synthetic source"):
        load_cifar("synthetic:many")


def test_source_from_env(monkeypatch):
    monkeypatch.setenv("CIFARCTL_DATA", "synthetic:20")
    assert len(load_cifar().train_y) == 20
    assert sources.resolve_source("x") == "x"


def test_subsets_are_class_balanced_and_deterministic():
    full = load_cifar("synthetic:1000:300", seed=0)
    a = load_cifar("synthetic:1000:300", seed=0, train_subset=95, test_subset=30)
    b = load_cifar("synthetic:1000:300", seed=0, train_subset=95, test_subset=30)
    c = load_cifar("synthetic:1000:300", seed=1, train_subset=95)
    counts = np.bincount(a.train_y, minlength=10)
    assert counts.sum() == 95
    assert counts.max() - counts.min() <= 1
    assert (np.bincount(a.test_y, minlength=10) == 3).all()
    np.testing.assert_array_equal(a.train_x, b.train_x)
    assert not np.array_equal(a.train_x, c.train_x[: len(a.train_x)])
    # every subset image is one of the full set's images with the same label
    rows = {img.tobytes(): y for img, y in zip(full.train_x, full.train_y)}
    assert all(rows[img.tobytes()] == y for img, y in zip(a.train_x, a.train_y))
    assert len(load_cifar("synthetic:50", train_subset=500).train_y) == 50
    with pytest.raises(DataError, match="train_subset must be a positive"):
        load_cifar("synthetic:50", train_subset=0)


def test_balanced_indices_with_uneven_classes():
    y = np.array([0] * 2 + [1] * 50 + [2] * 50)
    idx = sources.balanced_indices(y, 30, 3, seed=0)
    assert len(idx) == 30
    assert len(set(idx.tolist())) == 30
    assert np.bincount(y[idx]).tolist() == [2, 14, 14]


def test_channel_stats_exact():
    x = np.zeros((2, 2, 2, 3), np.uint8)
    x[..., 0] = 255
    x[0, ..., 1] = 51
    s = channel_stats(x)
    assert s["mean"] == pytest.approx((1.0, 0.1, 0.0))
    assert s["std"] == pytest.approx((0.0, 0.1, 0.0))
    assert s["min"] == (1.0, 0.0, 0.0)
    assert s["max"] == (1.0, 0.2, 0.0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    ref = y.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(channel_stats(y)["mean"], ref.mean(0), atol=1e-12)
    np.testing.assert_allclose(channel_stats(y)["std"], ref.std(0), atol=1e-9)
    # sizes that are not whole rows of 256 pixels (the tail path), down to one pixel; one channel
    for shape in ((1, 1, 1, 3), (7, 5, 3, 3), (3, 300, 3), (4, 32, 32, 1)):
        z = rng.integers(0, 256, shape, dtype=np.uint8)
        flat = z.reshape(-1, shape[-1]) / 255.0
        got = channel_stats(z)
        np.testing.assert_allclose(got["mean"], flat.mean(0), atol=1e-12)
        np.testing.assert_allclose(got["std"], flat.std(0), atol=1e-9)
        assert got["min"] == tuple(flat.min(0))
        assert got["max"] == tuple(flat.max(0))


# ---------------------------------------------------------------- (7) the shared JPEG copy

@pytest.fixture(scope="module")
def jpeg_cache(request, tmp_path_factory) -> Path:
    """The session cache from conftest when there is one, so the archive is decoded once."""
    try:
        return request.getfixturevalue("data_cache_dir")
    except pytest.FixtureLookupError:
        return tmp_path_factory.mktemp("jpeg-cache")


@pytest.fixture(scope="module")
def jpeg_data(jpeg_cache) -> CifarArrays:
    """The shared JPEG copy of CIFAR-10, decoded once (or skip where it is absent)."""
    archive = shared_archive()
    if archive is None:
        pytest.skip("shared CIFAR-10 copy ../shared/data/cifar10-jpeg.tar.xz not found")
    return load_cifar(archive, cache_dir=jpeg_cache, progress=False)


@pytest.mark.slow
def test_shared_jpeg_archive(jpeg_data):
    assert jpeg_data.train_x.shape == (50000, 32, 32, 3)
    assert jpeg_data.test_x.shape == (10000, 32, 32, 3)
    assert jpeg_data.classes == list(CLASSES)
    assert np.bincount(jpeg_data.train_y).tolist() == [5000] * 10
    assert np.bincount(jpeg_data.test_y).tolist() == [1000] * 10
    stats = channel_stats(jpeg_data.train_x)
    np.testing.assert_allclose(stats["mean"], (0.4913, 0.4821, 0.4465), atol=1e-3)
    np.testing.assert_allclose(stats["std"], (0.2452, 0.2428, 0.2606), atol=1e-3)


@pytest.mark.slow
def test_shared_jpeg_archive_reload_is_cached(jpeg_data, jpeg_cache):
    again = load_cifar(shared_archive(), cache_dir=jpeg_cache, progress=False)
    assert again.cached
    assert again.classes == jpeg_data.classes
    np.testing.assert_array_equal(again.test_x[::97], jpeg_data.test_x[::97])
    np.testing.assert_array_equal(again.train_y, jpeg_data.train_y)


# ---------------------------------------------------------------- (8) offline cifar10

def test_offline_cifar10(tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def no_network(url, folder, filename, md5):
        (Path(folder) / filename).write_bytes(b"half an archive")
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(sources, "_download_and_extract", no_network)
    with pytest.raises(DataError) as e:
        load_cifar("cifar10", cache_dir=cache)
    text = str(e.value)
    assert text.startswith("cannot download CIFAR-10 (no network?): put cifar-10-python.tar.gz")
    assert str(cache) in text
    assert "CIFARCTL_DATA" in text
    assert "\n" not in text
    assert list(cache.iterdir()) == []  # no half-downloaded archive, no temp folder


def test_cifar10_uses_archive_already_in_cache(tmp_path, monkeypatch):
    expected = write_batches(tmp_path / "src")
    cache = tmp_path / "cache"
    cache.mkdir()
    make_tar(expected["folder"], cache / "cifar-10-python.tar.gz", "cifar-10-batches-py", "w:gz")
    monkeypatch.setattr(sources, "_download_and_extract", lambda *a: pytest.fail("downloaded"))
    assert_same(load_cifar("cifar10", cache_dir=cache, progress=False), expected)


def test_cifar10_download_moves_batches_into_cache(tmp_path, monkeypatch):
    expected = write_batches(tmp_path / "src")
    cache = tmp_path / "cache"

    def fake_download(url, folder, filename, md5):
        assert url == sources.CIFAR10_URL
        assert md5 == sources.CIFAR10_MD5
        make_tar(expected["folder"], Path(folder) / filename, "cifar-10-batches-py", "w:gz")
        with tarfile.open(Path(folder) / filename) as tf:
            tf.extractall(folder, filter="data")

    monkeypatch.setattr(sources, "_download_and_extract", fake_download)
    assert_same(load_cifar("cifar10", cache_dir=cache, progress=False), expected)
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py", "decoded"]


# ---------------------------------------------------------------- (9) the `data` command

def test_data_command(tmp_path, cache_dir):
    from typer.testing import CliRunner

    from cifarctl.cli import app

    write_image_folder(tmp_path / "set")
    runner = CliRunner()
    result = runner.invoke(app, ["data", str(tmp_path / "set")])
    assert result.exit_code == 0, result.output
    assert "images per class" in result.output
    assert "truck" in result.output
    assert "sample images skipped" in result.output
    result = runner.invoke(app, ["data", str(tmp_path / "set"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["counts"]["train"] == {c: 3 for c in CLASSES}
    assert info["counts"]["test"] == {c: 2 for c in CLASSES}
    assert info["cached"] is True
    assert len(info["train_stats"]["mean"]) == 3
    result = runner.invoke(app, ["data", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_data_command_draws_samples_on_a_terminal(monkeypatch, cache_dir):
    from rich.console import Console
    from typer.testing import CliRunner

    from cifarctl.cli import app, data_cmd

    out = io.StringIO()
    term = Console(file=out, force_terminal=True, color_system="truecolor", width=140)
    monkeypatch.setattr(data_cmd, "console", term)
    result = CliRunner().invoke(app, ["data", "synthetic:30", "--samples", "3"])
    assert result.exit_code == 0, result.output
    text = out.getvalue()
    assert "\u2580" in text
    assert "\x1b[38;2;" in text
    assert "48;2;" in text
    assert "airplane" in text
    assert "bird" in text


def test_render_images_shape():
    from rich.console import Console

    from cifarctl.ui.images import render_images

    img = np.zeros((32, 32, 3), np.uint8)
    img[:16] = (255, 0, 0)
    console = Console(width=80, force_terminal=True, color_system="truecolor")
    with console.capture() as cap:
        console.print(render_images([img, img], ["red top", "same"], scale=1))
    lines = cap.get().splitlines()
    assert len(lines) == 17  # 16 rows of half blocks + a label row
    assert "\x1b[38;2;255;0;0;48;2;255;0;0m" in cap.get()


def test_half_blocks_carry_the_pixels():
    from cifarctl.ui.images import UPPER_HALF, image_text

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)  # odd height: last row has no lower
    text = image_text(img)
    rows = text.plain.split("\n")
    assert rows == [UPPER_HALF * 4] * 3
    cells = list(text.spans)  # one span per cell, in reading order
    assert len(cells) == 12
    for k, span in enumerate(cells):
        r, c = divmod(k, 4)
        assert span.style.color.triplet == tuple(img[2 * r, c])
        lower = span.style.bgcolor
        if 2 * r + 1 < 5:
            assert lower.triplet == tuple(img[2 * r + 1, c])
        else:
            assert lower is None
