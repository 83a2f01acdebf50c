"""Data beyond CIFAR-10: CIFAR-100 in its official format (fine and coarse labels) and image
folders with any number of classes and any image size, end to end through train, eval,
misclassified and predict with the run's own class names."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FINE = 100
COARSE = 20


def _pickled(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def cifar100_archive(dest: Path, per_class_train: int = 3, per_class_test: int = 1) -> Path:
    """``cifar-100-python.tar.gz`` in the official layout and encoding (python-2 style
    pickles: byte-string keys, uint8 rows of 3072 planar values, fine and coarse label lists),
    with learnable images: each fine class has its own colour."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (FINE, 3))
    fine_names = [f"fine{i:02d}".encode() for i in range(FINE)]
    coarse_names = [f"coarse{i:02d}".encode() for i in range(COARSE)]

    def split(per: int) -> bytes:
        y = np.repeat(np.arange(FINE), per)
        x = np.clip(colours[y][:, :, None] + rng.normal(0, 20, (len(y), 3, 1024)), 0, 255).astype(np.uint8)
        return _pickled({b"filenames": [b"x.png"] * len(y), b"batch_label": b"x",
                         b"fine_labels": [int(v) for v in y], b"coarse_labels": [int(v) // 5 for v in y],
                         b"data": x.reshape(len(y), 3072)})

    files = {"train": split(per_class_train), "test": split(per_class_test),
             "meta": _pickled({b"fine_label_names": fine_names, b"coarse_label_names": coarse_names})}
    path = dest / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def test_cifar100_reader_fine_and_coarse(tmp_path):
    from cifarctl.data import load_cifar

    archive = cifar100_archive(tmp_path)
    fine = load_cifar(archive, cache_dir=tmp_path / "cache", progress=False)
    assert fine.num_classes == 100
    assert fine.classes[7] == "fine07"
    assert fine.train_x.shape == (300, 32, 32, 3)
    assert fine.test_y.tolist() == list(range(100))
    coarse = load_cifar(archive, cache_dir=tmp_path / "cache", progress=False, label_kind="coarse")
    assert coarse.classes == [f"coarse{i:02d}" for i in range(20)]
    assert coarse.test_y[99] == 19
    again = load_cifar(archive, cache_dir=tmp_path / "cache", progress=False)  # its own cache file
    assert again.cached
    assert again.num_classes == 100
    from cifarctl.errors import DataError

    with pytest.raises(DataError, match="image_size 48.*32x32"):
        load_cifar(archive, cache_dir=tmp_path / "cache", progress=False, image_size=48)
    with pytest.raises(DataError, match="label_kind coarse"):
        load_cifar("synthetic:50:20", progress=False, label_kind="coarse")


def test_a_100_class_run_trains_evaluates_and_predicts_with_its_names(cli, tmp_path):
    archive = cifar100_archive(tmp_path)
    runs = tmp_path / "runs"
    res = cli("train", "s8_bn", "--set", f"data.source={archive}", "--set", "epochs=1", "--set", "data.batch_size=50",
              "--set", "data.test_batch_size=50", "--runs-dir", runs, "--name", "c100")
    assert res.exit_code == 0, res.output
    run = runs / "c100"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["classes"][:2] == ["fine00", "fine01"]
    assert len(summary["classes"]) == 100
    ev = cli("eval", run)
    assert ev.exit_code == 0, ev.output
    assert "confusion matrix (rows" not in ev.stdout
    assert "most confused" in ev.stdout
    assert "fine" in ev.stdout
    assert "confusion.csv" in ev.stdout
    csv = (run / "confusion.csv").read_text().splitlines()
    assert len(csv) == 101
    assert csv[0].split(",")[1] == "fine00"
    data = json.loads(cli("eval", run, "--json").stdout)
    assert len(data["confusion"]) == 100
    assert len(data["per_class"]) == 100
    from cifarctl.data import load_cifar

    img = load_cifar(archive, progress=False).test_x[42]
    Image.fromarray(img).save(tmp_path / "one.png")
    pred = json.loads(cli("predict", run, tmp_path / "one.png", "--json", "--top", "100").stdout)
    assert {t["class"] for t in pred["predictions"][0]["top"]} == {f"fine{i:02d}" for i in range(100)}
    coarse = cli("train", "s8_bn", "--set", f"data.source={archive}", "--set", "data.label_kind=coarse",
                 "--set", "epochs=1", "--set", "data.batch_size=50", "--runs-dir", runs, "--name", "c20")
    assert coarse.exit_code == 0, coarse.output
    assert json.loads((runs / "c20" / "summary.json").read_text())["classes"][-1] == "coarse19"


def image_folder(dest: Path, classes: list[str], per_train: int, per_test: int, sizes=((48, 48),)) -> Path:
    """train/<class>/*, test/<class>/* of learnable images (one colour per class), in the given
    sizes and a mix of modes (RGB JPEG, RGBA PNG, grey), so every image needs resizing or converting."""
    rng = np.random.default_rng(1)
    for split, n in (("train", per_train), ("test", per_test)):
        for c, name in enumerate(classes):
            (dest / split / name).mkdir(parents=True)
            colour = np.array([(c * 97) % 256, (c * 53 + 80) % 256, (c * 151 + 30) % 256])
            for i in range(n):
                w, h = sizes[i % len(sizes)]
                px = np.clip(colour + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
                im = Image.fromarray(px)
                if i % 3 == 1:
                    im.convert("RGBA").save(dest / split / name / f"{i}.png")
                else:
                    im.save(dest / split / name / f"{i}.jpg", quality=95)
    return dest


def test_image_folder_any_classes_and_sizes(tmp_path):
    from cifarctl.data import load_cifar

    folder = image_folder(tmp_path / "f", ["cow", "ant", "bee"], 6, 3, sizes=((60, 40), (48, 48), (100, 80)))
    d = load_cifar(folder, cache_dir=tmp_path / "cache", progress=False, image_size=48)
    assert d.classes == ["ant", "bee", "cow"]
    assert d.train_x.shape == (18, 48, 48, 3)
    small = load_cifar(folder, cache_dir=tmp_path / "cache", progress=False)  # default 32: its own cache file
    assert small.train_x.shape == (18, 32, 32, 3)
    assert not small.cached
    from cifarctl.errors import DataError

    one = image_folder(tmp_path / "one", ["solo"], 2, 1)
    with pytest.raises(DataError, match="at least two"):
        load_cifar(one, cache_dir=tmp_path / "cache", progress=False)


AUG48 = ("data.augment=[{PadIfNeeded: {min_height: 54, min_width: 54, border_mode: 0, fill: 0}}, "
         "{RandomCrop: {height: 48, width: 48}}, {HorizontalFlip: {p: 0.5}}]")


def test_a_48px_folder_run_end_to_end_with_its_names(cli, tmp_path):
    folder = image_folder(tmp_path / "f", ["cow", "ant", "bee", "fox"], 16, 4, sizes=((48, 48), (64, 52)))
    runs = tmp_path / "runs"
    common = ["--set", f"data.source={folder}", "--set", "data.image_size=48", "--set", "data.batch_size=16",
              "--set", "data.test_batch_size=16", "--set", "epochs=2", "--runs-dir", runs]
    crop32 = cli("train", "s8_bn", *common, "--name", "crop32")  # the recipe's crop is CIFAR-sized
    assert crop32.exit_code == 2
    assert "turn a 48x48 image into 32x32" in crop32.output
    assert "RandomCrop 48" in crop32.output
    assert not (runs / "crop32").exists()
    common += ["--set", AUG48]
    bad = cli("train", "s8_bn", *common, "--set", "model_args.num_classes=10", "--name", "bad")
    assert bad.exit_code == 2
    assert "num_classes: 10" in bad.output
    assert "4 classes" in bad.output
    assert not (runs / "bad").exists()
    res = cli("train", "s8_bn", *common, "--name", "r48")
    assert res.exit_code == 0, res.output
    run = runs / "r48"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["classes"] == ["ant", "bee", "cow", "fox"]
    assert summary["image_size"] == 48
    ev = json.loads(cli("eval", run, "--json").stdout)
    assert ev["classes"] == ["ant", "bee", "cow", "fox"]
    assert ev["images"] == 16
    assert ev["accuracy"] == summary["best_test_acc"]
    mis = cli("misclassified", run, "--gradcam", "--out", tmp_path / "mis.png", "--json")
    assert mis.exit_code == 0, mis.output
    from rich.console import Console

    from cifarctl.analysis.misclassified import find_misclassified
    from cifarctl.ui.gallery import render_gallery

    found = find_misclassified(run, gradcam=True, device="cpu")
    assert found.images.shape[1:] == (48, 48, 3)
    assert found.cams.shape[1:] == (48, 48)
    Console(file=io.StringIO(), width=200).print(render_gallery(found))  # the terminal gallery at 48 px
    assert all(m["true"] in summary["classes"] for m in json.loads(mis.stdout)["items"])
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.full((300, 200, 3), (0, 80, 30), np.uint8)).save(photo)
    pred = json.loads(cli("predict", run, photo, "--json", "--top", "4").stdout)
    assert pred["image_size"] == 48
    assert sorted(t["class"] for t in pred["predictions"][0]["top"]) == ["ant", "bee", "cow", "fox"]
    out = cli("export", run, "--format", "exported-program", "--json")
    assert out.exit_code == 0, out.output
    card = (run / "export" / "exported-program" / "MODEL_CARD.md").read_text()
    assert "(N, 3, 48, 48)" in card
    assert "| 3 | fox |" in card


def test_a_folder_cut_from_the_jpeg_copy_at_48px(jpeg_archive, tmp_path):
    """4 classes of the real images, upscaled to 48x48 as files: read back at 48 (no resampling) and at 32."""
    from cifarctl.data import load_cifar

    keep = ("airplane", "automobile", "bird", "cat")
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(jpeg_archive, "r|xz") as tf:
        for m in tf:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) != 3 or parts[1] not in keep:
                continue
            key = (parts[0], parts[1])
            if counts.get(key, 0) >= (20 if parts[0] == "train" else 5):
                continue
            counts[key] = counts.get(key, 0) + 1
            im = Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB").resize((48, 48), Image.BICUBIC)
            out = tmp_path / "cut" / parts[0] / parts[1] / (Path(parts[2]).stem + ".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            im.save(out)
            if len(counts) == 8 and all(v >= (20 if k[0] == "train" else 5) for k, v in counts.items()):
                break
    d = load_cifar(tmp_path / "cut", cache_dir=tmp_path / "cache", progress=False, image_size=48)
    assert d.classes == list(keep)
    assert d.train_x.shape == (80, 48, 48, 3)
    assert d.test_x.shape == (20, 48, 48, 3)
    first = sorted((tmp_path / "cut" / "train" / "airplane").iterdir())[0]
    assert (d.train_x[0] == np.asarray(Image.open(first))).all()  # 48 px files at 48: read as they are
