"""Augmentation: recipe validation, and the device backend against albumentations."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402

from cifarctl.augment.device import compile_steps, unsupported_step  # noqa: E402
from cifarctl.augment.per_image import (  # noqa: E402
    AlbumentationsDataset, build_albumentations, make_albumentations_loader,
)
from cifarctl.augment.spec import check_steps, mean_fill  # noqa: E402

# Any albumentations warning is a silent fallback: fail the test.
pytestmark = pytest.mark.filterwarnings("error::UserWarning", "error::DeprecationWarning:albumentations.*")

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
N01 = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # output * 255 = the uint8 pixels
CIFAR = {"mean": MEAN, "std": STD}
MEAN_RGB = np.array(mean_fill(MEAN))  # `fill: mean` = (125, 123, 114)

EXAMPLE = [
    {"PadIfNeeded": {"min_height": 40, "min_width": 40, "border_mode": 0, "fill": 0}},
    {"RandomCrop": {"height": 32, "width": 32}},
    {"HorizontalFlip": {"p": 0.5}},
    {"Affine": {"translate_percent": [-0.1, 0.1], "scale": [0.9, 1.1], "rotate": [-15, 15],
                "border_mode": 0, "fill": "mean", "p": 0.5}},
    {"CoarseDropout": {"num_holes_range": [1, 1], "hole_height_range": [16, 16],
                       "hole_width_range": [16, 16], "fill": "mean", "p": 0.5}},
]
S10 = [
    {"PadIfNeeded": {"min_height": 40, "min_width": 40, "border_mode": 4}},
    {"RandomCrop": {"height": 32, "width": 32}},
    {"HorizontalFlip": {"p": 0.5}},
    {"CoarseDropout": {"num_holes_range": [1, 1], "hole_height_range": [8, 8],
                       "hole_width_range": [8, 8], "fill": "mean", "p": 0.5}},
]
S9 = EXAMPLE[2:]


def images(n: int, lo: int = 0, hi: int = 256, seed: int = 0) -> np.ndarray:
    """n synthetic uint8 NHWC images."""
    return np.random.default_rng(seed).integers(lo, hi, (n, 32, 32, 3), dtype=np.uint8)


def run_device(steps, imgs: np.ndarray, normalize=N01, seed: int = 0) -> np.ndarray:
    aug = compile_steps(steps, normalize, "cpu")
    assert aug is not None, unsupported_step(steps)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    out = aug(x, torch.Generator().manual_seed(seed))
    assert out.dtype == torch.float32
    assert out.shape[:2] == (len(imgs), 3)
    return out.permute(0, 2, 3, 1).numpy()


def run_albumentations(steps, imgs: np.ndarray, normalize=N01, seed: int = 0) -> np.ndarray:
    compose = build_albumentations(steps, normalize, seed=seed)
    out = np.stack([compose(image=im)["image"] for im in imgs])
    assert out.dtype == np.float32
    return out


def pixels(out: np.ndarray, normalize=N01) -> np.ndarray:
    """Normalized outputs back to integer pixel values."""
    mean, std = np.array(normalize["mean"]), np.array(normalize["std"])
    return np.rint((out * std + mean) * 255).astype(np.int64)


# ------------------------------------------------------------------- check_steps
def test_check_unknown_transform_suggests_close_match():
    (where, msg), = check_steps([{"CoarseDropuot": {"p": 0.5}}])
    assert where == "[0]"
    assert "unknown augmentation 'CoarseDropuot'" in msg
    assert "'CoarseDropout'" in msg


def test_check_removed_arguments_name_their_replacement():
    problems = dict(check_steps([
        {"HorizontalFlip": None},
        {"CoarseDropout": {"max_holes": 1, "max_height": 8, "fill_value": 0}},
        {"PadIfNeeded": {"min_height": 40, "min_width": 40, "value": 0}},
        {"HorizontalFlip": {"always_apply": True}},
    ]))
    assert "num_holes_range" in problems["[1].CoarseDropout.max_holes"]
    assert "was removed in albumentations 2" in problems["[1].CoarseDropout.max_holes"]
    assert "hole_height_range" in problems["[1].CoarseDropout.max_height"]
    assert problems["[1].CoarseDropout.fill_value"].endswith("use fill")
    assert problems["[2].PadIfNeeded.value"].endswith("use fill")
    assert "p: 1.0" in problems["[3].HorizontalFlip.always_apply"]
    assert len(problems) == 5


def test_check_bad_values_and_shapes():
    problems = dict(check_steps([
        {"CoarseDropout": {"num_holes_range": [2, 1]}},
        {"HorizontalFlip": {"p": 1.5}},
        {"Affine": {"rotat": 10}},
        "HorizontalFlip",
        {"CoarseDropout": {"hole_height_range": [0.1, 0.2], "hole_width_range": [8, 8]}},
        {"Normalize": None},
        {"HorizontalFlip": {"p": 0.5}},
    ]))
    assert "num_holes_range" in next(k for k in problems if k.startswith("[0]"))
    assert "less than or equal to 1" in problems["[1].HorizontalFlip.p"]
    assert "'rotate'" in problems["[2].Affine.rotat"]
    assert "single-key mapping" in problems["[3]"]
    assert "both be pixels" in problems["[4].CoarseDropout.hole_width_range"]
    assert "last step" in problems["[5].Normalize"]


@pytest.mark.parametrize("steps", [EXAMPLE, S10, S9], ids=["example", "s10", "s9"])
def test_check_good_steps_pass(steps):
    assert check_steps(steps) == []


def test_check_accepts_shift_scale_rotate_and_noops():
    steps = [{"ShiftScaleRotate": {"shift_limit": 0.1, "scale_limit": 0.1, "rotate_limit": 10}},
             {"Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}}, {"ToTensorV2": None}]
    assert check_steps(steps) == []
    assert compile_steps(steps, None, "cpu") is not None


def test_check_module_does_not_import_torch():
    code = "import sys, cifarctl.augment.spec as c; assert c.check_steps([]) == []; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unsupported_step_is_named():
    steps = [{"HorizontalFlip": {"p": 0.5}}, {"ColorJitter": {"brightness": 0.2}}]
    assert unsupported_step(steps) == "ColorJitter"
    assert compile_steps(steps, None, "cpu") is None
    assert unsupported_step(S10) is None
    assert unsupported_step(EXAMPLE) is None


# ------------------------------------------------------ device vs albumentations
@pytest.mark.parametrize("border_mode", [0, 1, 2, 3, 4])
def test_deterministic_steps_match_albumentations_exactly(border_mode):
    imgs = images(16)
    steps = [{"HorizontalFlip": {"p": 1.0}},
             {"PadIfNeeded": {"min_height": 41, "min_width": 38, "border_mode": border_mode,
                              "fill": [10, 20, 30], "position": "center"}},
             {"VerticalFlip": {"p": 1.0}},
             {"PadIfNeeded": {"min_height": 90, "min_width": 90, "border_mode": border_mode, "fill": 7}},
             {"CenterCrop": {"height": 36, "width": 30}}]
    dev, alb = run_device(steps, imgs), run_albumentations(steps, imgs)
    assert dev.shape == alb.shape == (16, 36, 30, 3)
    np.testing.assert_array_equal(pixels(dev), pixels(alb))


FIXED_AFFINES = {
    "affine": {"Affine": {"rotate": [-20, -20], "scale": {"x": [0.8, 0.8], "y": [1.1, 1.1]},
                          "translate_percent": {"x": [0.1, 0.1], "y": [-0.05, -0.05]},
                          "shear": {"x": [8, 8], "y": [-4, -4]}, "fill": "mean", "p": 1.0}},
    "affine_px_replicate": {"Affine": {"rotate": [30, 30], "scale": [0.9, 0.9], "translate_px": [-3, -3],
                                       "border_mode": 1, "p": 1.0}},
    "ssr_reflect": {"ShiftScaleRotate": {"shift_limit": [0.08, 0.08], "scale_limit": [0.2, 0.2],
                                         "rotate_limit": [-45, -45], "border_mode": 2, "p": 1.0}},
}


@pytest.mark.parametrize("name", list(FIXED_AFFINES))
def test_affine_with_fixed_parameters_matches_cv2(name):
    imgs = images(32)
    steps = [FIXED_AFFINES[name]]
    diff = np.abs(pixels(run_device(steps, imgs)) - pixels(run_albumentations(steps, imgs)))
    assert diff.max() <= 1
    assert diff.mean() < 0.01  # cv2 interpolates in fixed point


def test_affine_gpu_strategy_equals_cpu_strategy():
    """CUDA warps every image and keeps the selected ones (no sync); the CPU warps only those."""
    aug = compile_steps(EXAMPLE, None, "cpu")
    x = torch.from_numpy(images(64)).permute(0, 3, 1, 2).contiguous()
    affine = next(op for op in aug.ops if type(op).__name__ == "_Affine")
    outs = []
    for subset in (True, False):
        affine.subset = subset
        outs.append(aug(x, torch.Generator().manual_seed(3)))
    affine.subset = None
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)


def test_flip_fraction_matches_p():
    imgs = images(2000)
    steps = [{"HorizontalFlip": {"p": 0.3}}]
    for out in (run_device(steps, imgs), run_albumentations(steps, imgs)):
        flipped = (pixels(out) == imgs[:, :, ::-1]).all(axis=(1, 2, 3))
        kept = (pixels(out) == imgs).all(axis=(1, 2, 3))
        assert (flipped | kept).all()
        assert abs(flipped.mean() - 0.3) < 0.04


def _marker_images(n: int) -> np.ndarray:
    """Every pixel names its own position: R = 8 * row, G = 8 * col, B = 255 (fill is 0)."""
    r, c = np.meshgrid(np.arange(32) * 8, np.arange(32) * 8, indexing="ij")
    one = np.stack([r, c, np.full_like(r, 255)], -1).astype(np.uint8)
    return np.repeat(one[None], n, 0)


def test_pad_crop_offsets_are_exact_and_uniform():
    imgs = _marker_images(2000)
    steps = EXAMPLE[:2]  # pad 4 with 0, random crop 32
    padded = np.pad(imgs[0], ((4, 4), (4, 4), (0, 0)))
    for out in (run_device(steps, imgs), run_albumentations(steps, imgs)):
        px = pixels(out)
        dy = px[:, 16, 16, 0] // 8 - 16 + 4  # the centre pixel is never fill
        dx = px[:, 16, 16, 1] // 8 - 16 + 4
        for i in range(0, 2000, 97):  # every output is exactly a window of the padded image
            np.testing.assert_array_equal(px[i], padded[dy[i]:dy[i] + 32, dx[i]:dx[i] + 32])
        for d in (dy, dx):
            freq = np.bincount(d, minlength=9) / len(d)
            assert len(freq) == 9
            assert np.abs(freq - 1 / 9).max() < 0.035


@pytest.mark.parametrize("fill", ["mean", [0, 255, 17]])
def test_cutout_fraction_size_and_fill(fill):
    imgs = images(2000, lo=200)  # no pixel equals the fill colour by chance
    size = [0.25, 0.25] if fill == "mean" else [8, 8]  # fractions of 32, or pixels
    steps = [{"CoarseDropout": {"num_holes_range": [1, 1], "hole_height_range": size,
                                "hole_width_range": size, "fill": fill, "p": 0.4}}]
    colour = MEAN_RGB if fill == "mean" else np.array(fill)
    for out in (run_device(steps, imgs, CIFAR), run_albumentations(steps, imgs, CIFAR)):
        px = pixels(out, CIFAR)
        hole = (px == colour).all(-1)
        changed = (px != imgs).any(-1)
        np.testing.assert_array_equal(hole, changed)  # only the hole changes, to the fill colour
        has = hole.any(axis=(1, 2))
        assert abs(has.mean() - 0.4) < 0.04
        assert (hole[has].sum(axis=(1, 2)) == 64).all()
        rows, cols = hole[has].any(2), hole[has].any(1)
        assert (rows.sum(1) == 8).all()
        assert (cols.sum(1) == 8).all()
        tops = rows.argmax(1)
        assert tops.min() == 0
        assert tops.max() == 24  # top-left uniform in [0, 32 - 8]


def test_cutout_random_fill_and_hole_count():
    imgs = images(500, lo=200)
    steps = [{"CoarseDropout": {"num_holes_range": [2, 3], "hole_height_range": [4, 6],
                                "hole_width_range": [4, 6], "fill": "random", "p": 1.0}}]
    px = pixels(run_device(steps, imgs))
    changed = (px != imgs).any(-1).sum(axis=(1, 2))
    assert changed.min() >= 1
    assert changed.max() <= 3 * 36
    assert (px < 200).any()  # random values, not a constant colour


def test_cutout_random_uniform_fills_each_hole_with_one_colour():
    imgs = images(300, lo=200)
    steps = [{"CoarseDropout": {"num_holes_range": [1, 1], "hole_height_range": [8, 8],
                                "hole_width_range": [8, 8], "fill": "random_uniform", "p": 1.0}}]
    px = pixels(run_device(steps, imgs))
    for i in range(0, 300, 7):
        changed = (px[i] != imgs[i]).any(-1)
        colours = np.unique(px[i][changed], axis=0)
        assert 56 <= changed.sum() <= 64
        assert len(colours) == 1


def test_affine_fraction_and_border_fill():
    imgs = images(2000, lo=200)
    steps = [EXAMPLE[3]]
    for out in (run_device(steps, imgs, CIFAR), run_albumentations(steps, imgs, CIFAR)):
        px = pixels(out, CIFAR)
        changed = (px != imgs).any(axis=(1, 2, 3))
        assert abs(changed.mean() - 0.5) < 0.04
        fill = (px == MEAN_RGB).all(-1)
        border = fill[:, [0, -1], :].any(axis=(1, 2)) | fill[:, :, [0, -1]].any(axis=(1, 2))
        assert border[changed].mean() > 0.9
        assert not fill[~changed].any()


@pytest.mark.parametrize("balanced", [True, False])
def test_affine_scale_sampling_matches(balanced):
    """On a flat image only zooming out (scale < 1) changes pixels (fill at the border)."""
    imgs = np.full((1500, 32, 32, 3), 200, np.uint8)
    steps = [{"Affine": {"scale": [0.5, 2.0], "balanced_scale": balanced, "keep_ratio": True,
                         "fill": 0, "p": 1.0}}]
    want = 0.5 if balanced else 1 / 3
    for out in (run_device(steps, imgs), run_albumentations(steps, imgs)):
        shrunk = (pixels(out) != 200).any(axis=(1, 2, 3))
        assert abs(shrunk.mean() - want) < 0.05


@pytest.mark.parametrize("steps", [S10, S9], ids=["s10", "s9"])
def test_backends_agree_on_output_statistics(steps):
    rng = np.random.default_rng(1)  # smooth-ish images: a random colour per 8x8 block
    imgs = np.kron(rng.integers(0, 256, (1500, 4, 4, 3)), np.ones((1, 8, 8, 1))).astype(np.uint8)
    dev, alb = run_device(steps, imgs, CIFAR), run_albumentations(steps, imgs, CIFAR)
    assert dev.shape == alb.shape == (1500, 32, 32, 3)
    np.testing.assert_allclose(dev.mean(axis=(0, 1, 2)), alb.mean(axis=(0, 1, 2)), atol=0.02)
    np.testing.assert_allclose(dev.std(axis=(0, 1, 2)), alb.std(axis=(0, 1, 2)), atol=0.02)


# ------------------------------------------------------------ the device object
def test_same_seed_same_batches():
    aug = compile_steps(EXAMPLE, None, "cpu")
    x = torch.from_numpy(images(256)).permute(0, 3, 1, 2).contiguous()
    before = x.clone()
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(x, before)  # the data set is never modified in place
    idx = torch.tensor([3, 1, 200])
    assert torch.equal(aug(x, torch.Generator().manual_seed(5), index=idx),
                       aug(x[idx], torch.Generator().manual_seed(5)))


def test_normalize_only_and_nhwc_input():
    aug = compile_steps(S10, CIFAR, "cpu")
    nhwc = torch.from_numpy(images(8))
    x = nhwc.permute(0, 3, 1, 2).contiguous()
    want = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(aug.normalize_only(x), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(aug.normalize_only(nhwc), want, atol=1e-5, rtol=1e-5)
    g = torch.Generator().manual_seed(0)
    assert aug(nhwc, g).shape == (8, 3, 32, 32)


def test_explicit_normalize_step_replaces_recipe_normalize():
    steps = [{"Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}]
    imgs = images(4)
    dev, alb = run_device(steps, imgs, None), run_albumentations(steps, imgs, None)
    np.testing.assert_allclose(dev, alb, atol=1e-5)
    np.testing.assert_allclose(dev, (imgs / 255 - 0.5) / 0.25, atol=1e-5)


# ------------------------------------------------------------ per-image fallback
def test_dataset_items_and_seeded_loaders():
    imgs, labels = images(64), np.arange(64) % 10
    ds = AlbumentationsDataset(imgs, labels, build_albumentations(S10, None), seed=1)
    x, y = ds[3]
    assert x.dtype == torch.float32
    assert x.shape == (3, 32, 32)
    assert y == 3

    def first(seed, workers):
        loader = make_albumentations_loader(imgs, labels, S10, None, batch_size=16,
                                            workers=workers, seed=seed)
        return next(iter(loader))

    a, b, c = first(1, 0), first(1, 0), first(2, 0)
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(first(1, 2)[0], first(1, 2)[0])  # workers seed from the loader's seed
