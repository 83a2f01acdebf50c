"""Augmentation: recipe steps as batched tensor ops on the device, or per image.

The engine keeps the whole data set on the device as uint8 NCHW; :func:`compile_steps`
turns the recipe's albumentations 2.x steps into a :class:`DeviceAugment` that maps a batch
to normalized float32 NCHW with a handful of batched ops and no loop over images:

* PadIfNeeded / RandomCrop / CenterCrop / HorizontalFlip / VerticalFlip, in any order, are
  composed into one per-image row map and one column map (output index -> source index,
  -1 = fill) and applied with ONE integer ``gather``; the crop is exact.
* CoarseDropout builds its hole mask with broadcast comparisons and blends in place.
* Affine / ShiftScaleRotate: one ``affine_grid`` + ``grid_sample`` for the selected images.
* Normalize last, as ``x * (1 / (255 std)) - mean / std`` in float32.

Randomness comes only from the ``torch.Generator`` passed in, so a seed gives the same
batches. Steps without a batched version make :func:`unsupported_step` name them; training
then runs them per image in DataLoader workers (:mod:`cifarctl.augment.per_image`).
Validation (:func:`~cifarctl.augment.spec.check_steps`) lives in :mod:`cifarctl.augment.spec`,
which does not import torch itself.

Size (~510 lines): each batched step is a short function; they share the row/column
maps and the generator, and :func:`compile_steps` composes them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cifarctl.augment.spec import NOOP_STEPS, make_transform, mean_std, resolve_args, split_step

__all__ = ["DeviceAugment", "compile_steps", "make_normalizer", "unsupported_step"]

_BORDERS = {0: "constant", 1: "replicate", 2: "reflect", 3: "wrap", 4: "reflect_101"}
_GRID_PADDING = {"constant": "zeros", "replicate": "border", "reflect": "reflection"}


class _Unsupported(Exception):
    """A step that has no batched version (its name is the message)."""


def _fill_values(fill: Any, channels: int) -> list[float]:
    vals = [float(v) for v in fill] if isinstance(fill, (list, tuple, np.ndarray)) else [float(fill)]
    if len(vals) == 1:
        vals = vals * channels
    return (vals + [0.0] * channels)[:channels]  # cv2: missing channels are 0


def _fill_tensor(fill: Any, like: torch.Tensor, rounding: bool) -> torch.Tensor:
    """Per-channel fill as a (1, C, 1, 1) tensor of ``like``'s dtype (uint8: saturated)."""
    vals = _fill_values(fill, like.shape[1])
    if not like.is_floating_point():
        vals = [min(255, max(0, round(v) if rounding else int(v))) for v in vals]
    return _constant(tuple(vals), like.dtype, like.device)


@functools.lru_cache(maxsize=64)
def _constant(vals: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Cached: a fresh host-to-device copy per batch would stall a CUDA stream.
    return torch.tensor(vals, dtype=dtype, device=device).view(1, -1, 1, 1)


def _rand(n: int, g, device, *shape: int) -> torch.Tensor:
    return torch.rand(n, *shape, generator=g, device=device)


def _randint(n: int, lo: int, hi: int, g, device, *shape: int) -> torch.Tensor:
    """Integers uniform in [lo, hi] (inclusive); hi may be a tensor (per-sample bound)."""
    return (_rand(n, g, device, *shape) * (hi - lo + 1)).long() + lo


# ------------------------------------------------------------------ index maps
def _border_index(n: int, before: int, after: int, mode: str, device) -> torch.Tensor:
    """Source index of each padded position along one axis (-1 = the constant fill)."""
    i = torch.arange(-before, n + after, device=device)
    if mode == "constant":
        return torch.where((i < 0) | (i >= n), -1, i)
    if mode == "replicate":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return i.remainder(n)
    if mode == "reflect":  # cv2.BORDER_REFLECT: fedcba|abcdefgh|hgfedcb
        j = i.remainder(2 * n)
        return torch.where(j >= n, 2 * n - 1 - j, j)
    if n == 1:  # reflect_101: gfedcb|abcdefgh|gfedcba
        return torch.zeros_like(i)
    j = i.remainder(2 * n - 2)
    return torch.where(j >= n, 2 * n - 2 - j, j)


def _compose(prev: torch.Tensor | None, cur: torch.Tensor | None) -> torch.Tensor | None:
    """``result[i] = prev[cur[i]]`` per image, keeping -1 (fill); None is the identity."""
    if prev is None or cur is None:
        return cur if prev is None else prev
    n = max(prev.shape[0], cur.shape[0])
    ext = torch.cat([prev, prev.new_full((prev.shape[0], 1), -1)], 1)
    idx = torch.where(cur < 0, ext.shape[1] - 1, cur)
    return torch.gather(ext.expand(n, -1), 1, idx.expand(n, -1))


@dataclass
class _Pad:
    min_h: int | None
    min_w: int | None
    position: str
    mode: str
    fill: Any
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def maps(self, b, h, w, g, dev):
        key = (h, w, dev)  # the same for every batch: build it once
        if key not in self._cache:
            self._cache[key] = self._maps(h, w, dev)
        return self._cache[key]

    def _maps(self, h, w, dev):
        def split(cur, want):
            if want is None or cur >= want:
                return 0, 0
            before = int((want - cur) / 2.0)
            return before, want - cur - before
        top, bottom = split(h, self.min_h)
        left, right = split(w, self.min_w)
        if self.position != "center":
            top, bottom = (0, top + bottom) if "top" in self.position else (top + bottom, 0)
            left, right = (0, left + right) if "left" in self.position else (left + right, 0)
        return (_border_index(h, top, bottom, self.mode, dev)[None],
                _border_index(w, left, right, self.mode, dev)[None])


@dataclass
class _Crop:
    height: int
    width: int
    random: bool

    def maps(self, b, h, w, g, dev):
        if self.height > h or self.width > w:
            raise ValueError(f"crop {self.height}x{self.width} is larger than the image {h}x{w}")
        if self.random:  # albumentations: int((size - crop + 1) * uniform[0, 1))
            top = _randint(b, 0, h - self.height, g, dev, 1)
            left = _randint(b, 0, w - self.width, g, dev, 1)
        else:
            top = torch.full((1, 1), (h - self.height) // 2, device=dev)
            left = torch.full((1, 1), (w - self.width) // 2, device=dev)
        return (top + torch.arange(self.height, device=dev), left + torch.arange(self.width, device=dev))


@dataclass
class _Flip:
    axis: int  # 2 = vertical (rows), 3 = horizontal (columns)
    p: float

    def maps(self, b, h, w, g, dev):
        n = h if self.axis == 2 else w
        ar = torch.arange(n, device=dev)
        m = torch.where(_rand(b, g, dev, 1) < self.p, n - 1 - ar, ar)
        return (m, None) if self.axis == 2 else (None, m)  # None: the other axis is unchanged


class _Geometry:
    """Consecutive pad/crop/flip steps: one composed index map, one gather."""

    def __init__(self):
        self.ops: list = []
        self.fill: Any = None  # the constant fill, when some op pads with one

    def accepts(self, op) -> bool:
        fill = getattr(op, "fill", None) if getattr(op, "mode", "") == "constant" else None
        return fill is None or self.fill is None or _fill_values(fill, 3) == _fill_values(self.fill, 3)

    def add(self, op) -> None:
        if getattr(op, "mode", "") == "constant":
            self.fill = op.fill
        self.ops.append(op)

    def __call__(self, x: torch.Tensor, g, owned: bool):
        b, c, h0, w0 = x.shape
        dev = x.device
        if len(self.ops) == 1 and isinstance(self.ops[0], _Flip):  # cheaper than a gather
            flip = self.ops[0]
            on = (_rand(b, g, dev, 1, 1, 1) < flip.p).to(x.dtype)
            out = x.flip(flip.axis)
            return out.sub_(x).mul_(on).add_(x), True  # x + on * (flipped - x); uint8 wraps
        rows = cols = None
        h, w = h0, w0
        for op in self.ops:
            r, cl = op.maps(b, h, w, g, dev)
            rows, cols = _compose(rows, r), _compose(cols, cl)
            h = h if r is None else r.shape[1]
            w = w if cl is None else cl.shape[1]
        rows = torch.arange(h0, device=dev)[None] if rows is None else rows
        cols = torch.arange(w0, device=dev)[None] if cols is None else cols
        src, sw = x, w0
        if self.fill is not None:  # a 1-pixel fill border; index -1 lands on it
            src = x.new_empty(b, c, h0 + 2, w0 + 2)
            src[:, :, 1:-1, 1:-1] = x
            f = _fill_tensor(self.fill, x, rounding=True).view(1, c, 1)
            src[:, :, 0, :] = f
            src[:, :, -1, :] = f
            src[:, :, :, 0] = f
            src[:, :, :, -1] = f
            rows, cols, sw = rows + 1, cols + 1, w0 + 2
        idx = (rows * sw).unsqueeze(2) + cols.unsqueeze(1)  # (b|1, h, w)
        idx = idx.view(idx.shape[0], 1, h * w).expand(b, c, h * w)
        return torch.gather(src.reshape(b, c, -1), 2, idx).view(b, c, h, w), True


def _blend(x: torch.Tensor, hole: torch.Tensor, value: torch.Tensor) -> None:
    """In place: x = value where hole (0/1, x's dtype) else x; uint8 wraps, so this is exact."""
    x.sub_(value).mul_(1 - hole).add_(value)


@dataclass
class _Cutout:
    holes: tuple[int, int]
    hole_h: tuple[float, float]
    hole_w: tuple[float, float]
    fill: Any
    p: float

    @staticmethod
    def _sizes(b, k, size, rng, pixels, g, dev):
        if pixels:  # albumentations: integers(lo, min(hi, size) + 1)
            return _randint(b, int(rng[0]), int(min(rng[1], size)), g, dev, k)
        hole = (_rand(b, g, dev, k).mul_(rng[1] - rng[0]).add_(rng[0]) * size).long()
        return hole.clamp_(max=int(size * rng[1]))  # int(size * uniform), float-safe

    def __call__(self, x: torch.Tensor, g, owned: bool):
        if not owned:
            x = x.clone()
        b, c, h, w = x.shape
        dev, k = x.device, self.holes[1]
        pixels = self.hole_h[1] >= 1  # albumentations decides from the height range
        hh = self._sizes(b, k, h, self.hole_h, pixels, g, dev)
        ww = self._sizes(b, k, w, self.hole_w, pixels, g, dev)
        y0 = (_rand(b, g, dev, k) * (h - hh + 1)).long()  # top-left uniform in [0, h - hh]
        x0 = (_rand(b, g, dev, k) * (w - ww + 1)).long()
        on = _rand(b, g, dev, 1) < self.p
        if self.holes[0] != self.holes[1]:
            on = on & (torch.arange(k, device=dev) < _randint(b, self.holes[0], k, g, dev, 1))
        ah, aw = torch.arange(h, device=dev), torch.arange(w, device=dev)
        # 0/1 in x's dtype: multiplying is much faster than bool ops + any() on the CPU.
        rows = ((ah >= y0.unsqueeze(2)) & (ah < (y0 + hh).unsqueeze(2)) & on.unsqueeze(2)).to(x.dtype)
        cols = ((aw >= x0.unsqueeze(2)) & (aw < (x0 + ww).unsqueeze(2))).to(x.dtype)  # (b, k, w)
        if self.fill == "random_uniform":  # one colour per hole, later holes on top
            for i in range(k):
                colour = torch.randint(0, 256, (b, c, 1, 1), generator=g, device=dev).to(x.dtype)
                _blend(x, (rows[:, i, :, None] * cols[:, i, None, :]).unsqueeze(1), colour)
            return x, True
        hole = rows.unsqueeze(3) * cols.unsqueeze(2)  # (b, k, h, w)
        hole = hole[:, :1] if k == 1 else hole.amax(1, keepdim=True)
        if self.fill == "random":
            value = torch.randint(0, 256, (b, c, h, w), generator=g, device=dev).to(x.dtype)
        else:
            value = _fill_tensor(self.fill, x, rounding=False)
        _blend(x, hole, value)
        return x, True


def _affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (n, c, h, w), align_corners=False)`` as two broadcast adds
    (twice as fast on CPU as its batched matmul)."""
    n = theta.shape[0]
    u = torch.arange(w, device=theta.device, dtype=theta.dtype).mul_(2 / w).add_(1 / w - 1)
    v = torch.arange(h, device=theta.device, dtype=theta.dtype).mul_(2 / h).add_(1 / h - 1)
    th = theta.reshape(n, 6, 1, 1)
    grid = torch.empty(n, h, w, 2, device=theta.device, dtype=theta.dtype)
    torch.add(th[:, 0] * u.view(1, 1, w) + th[:, 2], th[:, 1] * v.view(1, h, 1), out=grid[..., 0])
    torch.add(th[:, 3] * u.view(1, 1, w) + th[:, 5], th[:, 4] * v.view(1, h, 1), out=grid[..., 1])
    return grid


@dataclass
class _Affine:
    scale: dict
    keep_ratio: bool
    balanced: bool
    translate_px: dict | None
    translate_percent: dict | None
    rotate: tuple[float, float]
    shear: dict
    mode: str
    fill: Any
    p: float
    subset: bool | None = None  # warp only the selected images; None: on the CPU only

    def _bounds(self, dev) -> tuple[torch.Tensor, torch.Tensor]:
        """Low/high of the 7 uniform draws: tx, ty, shear x, shear y, scale x, scale y, rotate."""
        t = self.translate_px or self.translate_percent
        px = 1 if self.translate_px is not None else 0  # whole pixels: randint(lo, hi) inclusive
        lo = [float(t["x"][0]), float(t["y"][0]), *(float(self.shear[k][0]) for k in "xy"),
              *(float(self.scale[k][0]) for k in "xy"), float(self.rotate[0])]
        hi = [float(t["x"][1]) + px, float(t["y"][1]) + px, *(float(self.shear[k][1]) for k in "xy"),
              *(float(self.scale[k][1]) for k in "xy"), float(self.rotate[1])]
        lo_t = _constant(tuple(lo), torch.float32, dev).view(1, 7)
        return lo_t, _constant(tuple(hi), torch.float32, dev).view(1, 7) - lo_t

    def _theta(self, b, h, w, g, dev) -> torch.Tensor:
        """(b, 2, 3) sampling matrices in grid_sample coordinates, as albumentations samples."""
        u = _rand(b, g, dev, 9)  # one draw for all parameters (few kernels on a GPU)
        lo, span = self._bounds(dev)
        v = torch.addcmul(lo, u[:, :7], span)
        if self.translate_px is not None:
            t = self.translate_px
            tx = v[:, 0].floor().clamp_(max=float(t["x"][1]))  # u < 1, but float rounding
            ty = v[:, 1].floor().clamp_(max=float(t["y"][1]))
        else:  # int(uniform * size): truncated to whole pixels
            tx, ty = (v[:, 0] * w).trunc(), (v[:, 1] * h).trunc()
        sx, sy = v[:, 4], v[:, 5]
        if self.balanced:  # below or above 1 with equal odds, when the range spans 1
            pick = []
            for i, key in ((4, "x"), (5, "y")):
                a, z = float(self.scale[key][0]), float(self.scale[key][1])
                if a < 1 < z:
                    pick.append(torch.where(u[:, i + 3] < 0.5, a + u[:, i] * (1 - a), 1 + u[:, i] * (z - 1)))
                else:
                    pick.append(v[:, i] if a < 1 or z > 1 else torch.ones_like(v[:, i]))
            sx, sy = pick
        if self.keep_ratio:
            sy = sx
        ang = torch.deg2rad(v[:, [2, 3, 6]])
        shx, shy = torch.tan(-ang[:, 0]), torch.tan(-ang[:, 1])  # albumentations negates shear
        cos, sin = torch.cos(ang[:, 2]), torch.sin(ang[:, 2])
        # Forward map about the image centre: L = Shear @ Rotate @ Scale, then translate.
        r00, r01, r10, r11 = cos * sx, sin * sy, -sin * sx, cos * sy
        a, bb, c, d = r00 + shx * r10, r01 + shx * r11, shy * r00 + r10, shy * r01 + r11
        det = a * d - bb * c
        i00, i01, i10, i11 = d / det, -bb / det, -c / det, a / det  # L^-1 maps output -> input
        theta = torch.stack([
            i00, i01 * (h / w), -(i00 * tx + i01 * ty) * (2 / w),
            i10 * (w / h), i11, -(i10 * tx + i11 * ty) * (2 / h),
        ], 1)
        return theta.view(b, 2, 3)

    def __call__(self, x: torch.Tensor, g, owned: bool):
        b, c, h, w = x.shape
        dev = x.device
        theta = self._theta(b, h, w, g, dev)
        sel = _rand(b, g, dev) < self.p
        subset = dev.type == "cpu" if self.subset is None else self.subset
        if subset:  # warp only the selected images (nonzero would sync a GPU: warp all there)
            idx = sel.nonzero().squeeze(1)
            if idx.numel() == 0:
                return x, owned
            src, theta = x.index_select(0, idx), theta.index_select(0, idx)
        else:
            src = x
        src = src.float()
        fill = None
        if self.mode == "constant" and any(_fill_values(self.fill, c)):
            # Sampling (x - fill) with zero padding, then adding fill back, gives exactly
            # sum_inside(w * x) + (1 - sum_inside(w)) * fill: the cv2 constant border.
            fill = _fill_tensor(self.fill, src, rounding=False)
            src.sub_(fill)
        warped = F.grid_sample(src, _affine_grid(theta, h, w), mode="bilinear",
                               padding_mode=_GRID_PADDING[self.mode], align_corners=False)
        if fill is not None:
            warped.add_(fill)
        if not x.is_floating_point():  # cv2 returns uint8 (rounded): stay in uint8, it is cheaper
            # float -> int16 -> uint8 is twice as fast as float -> uint8 on the CPU
            warped = warped.add_(0.5).clamp_(0, 255).to(torch.int16).to(x.dtype)
        else:
            warped = warped.to(x.dtype)
        if subset:  # out[i] = warped[rank(i)] if selected: one index_select
            pick = torch.arange(b, device=dev)
            pick[idx] = torch.arange(b, b + idx.numel(), device=dev)
            return torch.cat([x, warped]).index_select(0, pick), True
        return torch.where(sel.view(b, 1, 1, 1), warped, x), True


# --------------------------------------------------------------------- compiling
def _plan(steps: list[dict], normalize: Any) -> tuple[list, tuple, tuple, float]:
    """Ops and (mean, std, max_pixel_value); raises _Unsupported(name) for other steps."""
    mean, std = mean_std(normalize)
    max_pixel = 255.0
    ops: list = []
    real = [split_step(s) for s in steps]
    real = [(n, a) for n, a in real if n not in NOOP_STEPS]
    for pos, (name, args) in enumerate(real):
        t = make_transform(name, resolve_args(args, mean), strict_warnings=False)
        p = float(getattr(t, "p", 1.0))
        geom = None
        if name == "Normalize":
            if pos != len(real) - 1 or t.normalization != "standard" or p != 1.0:
                raise _Unsupported(name)
            mean, std, max_pixel = t.mean, t.std, float(t.max_pixel_value)
            continue
        if name in ("HorizontalFlip", "VerticalFlip"):
            geom = [_Flip(3 if name == "HorizontalFlip" else 2, p)]
        elif name == "PadIfNeeded":
            if (p != 1.0 or t.pad_height_divisor is not None or t.pad_width_divisor is not None
                    or t.position == "random"):
                raise _Unsupported(name)
            geom = [_Pad(t.min_height, t.min_width, t.position, _BORDERS[t.border_mode], t.fill)]
        elif name in ("RandomCrop", "CenterCrop"):
            if p != 1.0 or (t.pad_if_needed and t.pad_position == "random"):
                raise _Unsupported(name)
            geom = [_Crop(t.height, t.width, random=name == "RandomCrop")]
            if t.pad_if_needed:
                geom.insert(0, _Pad(t.height, t.width, t.pad_position, _BORDERS[t.border_mode], t.fill))
        elif name == "CoarseDropout":
            if isinstance(t.fill, str) and t.fill not in ("random", "random_uniform"):
                raise _Unsupported(name)
            ops.append(_Cutout(tuple(t.num_holes_range), tuple(t.hole_height_range),
                               tuple(t.hole_width_range), t.fill, p))
        elif name in ("Affine", "ShiftScaleRotate"):
            mode = _BORDERS[t.border_mode]
            if t.fit_output or t.interpolation != 1 or mode not in _GRID_PADDING:
                raise _Unsupported(name)
            ops.append(_Affine(t.scale, t.keep_ratio, t.balanced_scale, t.translate_px,
                               t.translate_percent, tuple(t.rotate), t.shear, mode, t.fill, p))
        else:
            raise _Unsupported(name)
        for op in geom or ():
            if not (ops and isinstance(ops[-1], _Geometry) and ops[-1].accepts(op)):
                ops.append(_Geometry())
            ops[-1].add(op)
    return ops, tuple(_fill_values(mean, 3)), tuple(_fill_values(std, 3)), max_pixel


def unsupported_step(steps: list[dict]) -> str | None:
    """The name of the first step with no batched version, or None when all compile."""
    try:
        _plan(steps, None)
    except _Unsupported as exc:
        return str(exc)
    return None


class DeviceAugment:
    """Batched augmentation + normalization of uint8 images on one device.

    ``aug(x, generator)``: ``x`` is uint8 NCHW (N, C, H, W) on the device (NHWC is accepted
    and permuted); returns float32 NCHW, normalized. ``aug(data, generator, index=idx)``
    takes the batch ``data[idx]`` itself (on the CPU, inside its one-thread section).
    ``aug.normalize_only(x)`` for test data. ``x`` is never modified.
    """

    def __init__(self, ops: list, mean, std, max_pixel_value: float = 255.0, device="cpu",
                 names: tuple[str, ...] = (), cpu_threads: int | None = 1):
        self.ops = ops
        self.device = torch.device(device)
        self.names = names
        # On the CPU these ops are too small to gain from more threads, and an OpenMP team
        # with one thread descheduled (a busy machine) runs ~10x slower: use one thread.
        self.cpu_threads = cpu_threads if self.device.type == "cpu" else None
        self.mean, self.std, self.max_pixel_value = tuple(map(float, mean)), tuple(map(float, std)), float(max_pixel_value)
        m = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.scale = 1.0 / (s * max_pixel_value)
        self.bias = -m / s

    def __repr__(self) -> str:
        return f"DeviceAugment({' -> '.join(self.names + ('Normalize',))}, device={self.device})"

    @staticmethod
    def _nchw(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
            x = x.permute(0, 3, 1, 2)
        return x.contiguous()

    def normalize_only(self, x: torch.Tensor) -> torch.Tensor:
        """``(x / max_pixel_value - mean) / std`` as float32 NCHW, nothing random."""
        # x.float() then in place: torch.mul(uint8, float32) promotes without vectorizing.
        return self._nchw(x).float().mul_(self.scale).add_(self.bias)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 index: torch.Tensor | None = None) -> torch.Tensor:
        """Augment the batch ``x`` (or ``x[index]``, x being the whole data set) and normalize."""
        threads = torch.get_num_threads()
        if self.cpu_threads and threads > self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        try:
            x = self._nchw(x if index is None else x.index_select(0, index))
            owned = False
            for op in self.ops:
                x, owned = op(x, generator, owned)
            x = x if x.dtype == torch.float32 and owned else x.float()
            return x.mul_(self.scale).add_(self.bias)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)


def compile_steps(steps: list[dict], normalize: Any = None, device: str | torch.device = "cpu",
                  cpu_threads: int | None = 1) -> DeviceAugment | None:
    """The steps as a :class:`DeviceAugment` on ``device``, or None if one has no batched version.

    ``normalize``: the recipe's ``Normalize`` (mean, std in [0, 1]), a mapping, or None
    (CIFAR-10); an explicit ``Normalize`` step replaces it. ``cpu_threads``: intra-op
    threads while augmenting on the CPU (None: torch's setting).
    """
    try:
        ops, mean, std, max_pixel = _plan(steps, normalize)
    except _Unsupported:
        return None
    names = tuple(n for n, _ in map(split_step, steps) if n not in NOOP_STEPS and n != "Normalize")
    return DeviceAugment(ops, mean, std, max_pixel, device, names, cpu_threads)


def make_normalizer(normalize: Any, device: str | torch.device, steps: list | None = None) -> DeviceAugment:
    """A no-op DeviceAugment: ``f(x_u8, generator=None)`` and ``f.normalize_only(x_u8)``.

    An explicit ``Normalize`` step in ``steps`` wins over ``normalize``, as in training.
    """
    only = [s for s in (steps or []) if split_step(s)[0] == "Normalize"]
    return compile_steps(only, normalize, device) or compile_steps([], normalize, device)
