"""Cut an image folder of a few CIFAR-10 classes, upscaled to another size, from the JPEG copy.

Usage: python benchmarks/cut_folder.py --data ../shared/data/cifar10-jpeg.tar.xz --out /tmp/folder48
       [--classes airplane,automobile,bird,cat] [--size 48] [--per-class-train N] [--per-class-test M]

Writes ``OUT/train/<class>/*.png`` and ``OUT/test/<class>/*.png`` (every image of those
classes unless N/M are given), each resized to SIZE x SIZE with Pillow's bicubic filter: a
non-CIFAR-sized image folder for measuring ``cifarctl train --data OUT --set
data.image_size=SIZE``. The folder is made from the data set's images: never commit it.
"""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the CIFAR-10 image-folder archive (the JPEG copy)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--classes", default="airplane,automobile,bird,cat")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--per-class-train", type=int, default=None)
    ap.add_argument("--per-class-test", type=int, default=None)
    a = ap.parse_args()
    keep = set(a.classes.split(","))
    limit = {"train": a.per_class_train, "test": a.per_class_test}
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(a.data, "r|*") as tf:
        for m in tf:
            parts = m.name.removeprefix("./").split("/")
            if not m.isfile() or len(parts) != 3 or parts[0] not in limit or parts[1] not in keep:
                continue
            key = (parts[0], parts[1])
            if limit[parts[0]] is not None and counts.get(key, 0) >= limit[parts[0]]:
                continue
            counts[key] = counts.get(key, 0) + 1
            with Image.open(io.BytesIO(tf.extractfile(m).read())) as im:
                im = im.convert("RGB").resize((a.size, a.size), Image.BICUBIC)
            out = a.out / parts[0] / parts[1] / (Path(parts[2]).stem + ".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            im.save(out)
    for key in sorted(counts):
        print(f"{key[0]}/{key[1]}: {counts[key]} images at {a.size}x{a.size}")


if __name__ == "__main__":
    main()
