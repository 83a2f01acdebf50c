"""One image file -> the uint8 (S, S, 3) RGB array a model of input size S sees.

Used by the image-folder reader (training data) and by ``cifarctl predict`` (the user's
own photos), so both prepare an image the same way:

1. the EXIF orientation is applied (a phone photo stands the way it was taken);
2. the image becomes RGB: grey and palette images are expanded, an alpha channel is
   composited over white (a transparent PNG's hidden pixels never reach the model);
3. an image that is not S x S is resized so that its **shorter side is S** (Pillow's
   bicubic filter, which antialiases when shrinking) and the **centre S x S** is cut
   out. An image already S x S is used as it is, pixel for pixel.

A file is refused, with one line naming it and the fix, when it is not a regular file
(a FIFO would block, a device never ends), larger than :data:`MAX_FILE_BYTES`, not an
image Pillow reads, or a decompression bomb: more pixels than Pillow's
``Image.MAX_IMAGE_PIXELS`` (checked from the header, before any pixel is decoded).
"""

from __future__ import annotations

import io
import os
import stat
import warnings

import numpy as np

MAX_FILE_BYTES = 256 << 20  # no photo a classifier is shown is larger; a 1 GB "image" is refused unread
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
RESIZE_HELP = "shorter side resized to {s} px (bicubic), then the centre {s}x{s} crop"


def fit(im, size: int) -> np.ndarray:
    """``im`` (an open PIL image) as uint8 RGB (size, size, 3): see the module docstring."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(back, rgba).convert("RGB")
    elif im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits, not a clip at 255
        arr = np.asarray(im, dtype=np.int64)
        top = 65535 if arr.max(initial=0) > 255 else 255
        im = Image.fromarray((arr * 255 // top).astype(np.uint8)).convert("RGB")
    elif im.mode != "RGB":
        im = im.convert("RGB")
    w, h = im.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.uint8).copy()


def decode(name: str, payload: bytes | str | os.PathLike, size: int) -> tuple[np.ndarray | None, str | None]:
    """(array, None) or (None, one-line error naming ``name``): ``payload`` is the file's
    bytes or its path (a path is checked to be a regular file of a sane size first)."""
    from PIL import Image, UnidentifiedImageError

    try:
        if not isinstance(payload, bytes):
            why = file_problem(payload)
            if why:
                return None, f"{name}: {why}"
            fd = os.open(payload, os.O_RDONLY | os.O_NONBLOCK)  # swapped for a FIFO since: no block
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return None, f"{name}: not a regular file: give the path of an image"
                payload = f.read(MAX_FILE_BYTES + 1)
        if len(payload) > MAX_FILE_BYTES:
            return None, f"{name}: larger than {MAX_FILE_BYTES >> 20} MiB: not an image to classify; shrink it first"
        with warnings.catch_warnings():
            # more than MAX_IMAGE_PIXELS is a warning in Pillow (an error only past twice that): refuse it
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(payload)) as im:
                return fit(im, size), None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return None, (f"{name}: refused as a possible decompression bomb ({e}); resize it below "
                      f"{Image.MAX_IMAGE_PIXELS:,} pixels first")
    except (OSError, SyntaxError, ValueError) as e:
        why = "unrecognised format" if isinstance(e, UnidentifiedImageError) else (str(e) or type(e).__name__)
        return None, f"{name}: cannot decode image ({why}): the file is corrupt or not an image; replace or remove it"


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as an image file (a FIFO, a device, a folder, too large,
    missing), or None; nothing is opened, so a FIFO never blocks."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder"
    if not stat.S_ISREG(st.st_mode):
        kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
        return f"is a {kind}, not an image file: give the path of an image"
    if st.st_size > MAX_FILE_BYTES:
        return (f"is {st.st_size / (1 << 20):,.0f} MiB, more than any image to classify "
                f"({MAX_FILE_BYTES >> 20} MiB at most): shrink it first")
    return None
