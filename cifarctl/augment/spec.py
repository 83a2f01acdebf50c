"""Augmentation steps as albumentations 2.x sees them: validation and the per-image pipeline.

A recipe's ``data.augment`` is a list of single-key mappings ``{TransformName: {arg: value}}``
in albumentations 2.x names. albumentations 2.0.8 only *warns* about an argument it does not
know (``CoarseDropout(max_holes=...)``, ``PadIfNeeded(value=...)``) and silently falls back
to its defaults, so :func:`check_steps` rejects every such argument itself and turns any
warning raised while building a transform into a problem.

This module never imports torch itself (albumentations 2.0.8 imports it on its own import,
through ``albumentations.pytorch``); albumentations is imported only when there are steps.
It is the augmentation half of the recipe schema (``cifarctl.recipe`` validates with it), so
it stands in the base layer with the recipe package. The steps run as batched tensor ops in
:mod:`cifarctl.augment.device`, or per image in :mod:`cifarctl.augment.per_image`.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import ValidationError

from cifarctl import CIFAR_MEAN, CIFAR_STD
from cifarctl.errors import did_you_mean

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# Steps both backends skip: the engine already feeds the model a float CHW tensor.
NOOP_STEPS = frozenset({"ToTensorV2", "ToFloat"})

# Classes exported by albumentations that are not usable as a step on a single RGB image.
_NOT_STEPS = frozenset({
    "BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D",
    "CenterCrop3D", "CoarseDropout3D", "Pad3D", "PadIfNeeded3D", "RandomCrop3D", "ToTensor3D",
})
_NEEDS_TARGETS = frozenset({
    "AtLeastOneBBoxRandomCrop", "BBoxSafeRandomCrop", "RandomSizedBBoxSafeCrop",
    "RandomCropNearBBox", "CropNonEmptyMaskIfExists", "MaskDropout", "Mosaic",
    "OverlayElements", "TextImage", "Lambda",
})

# Arguments of albumentations 1.x that 2.0.8 ignores with a warning: old name -> what to write.
_REMOVED_FOR = {
    "CoarseDropout": {
        "max_holes": "num_holes_range: [min, max]",
        "min_holes": "num_holes_range: [min, max]",
        "max_height": "hole_height_range: [min, max]",
        "min_height": "hole_height_range: [min, max]",
        "max_width": "hole_width_range: [min, max]",
        "min_width": "hole_width_range: [min, max]",
    },
    "RandomResizedCrop": {"height": "size: [height, width]", "width": "size: [height, width]"},
    "RandomSizedCrop": {"height": "size: [height, width]", "width": "size: [height, width]"},
    "GaussNoise": {"var_limit": "std_range: [min, max] (fractions of the maximum value)",
                   "mean": "mean_range: [min, max]"},
    "ImageCompression": {"quality_lower": "quality_range: [min, max]",
                         "quality_upper": "quality_range: [min, max]"},
    "Downscale": {"scale_min": "scale_range: [min, max]", "scale_max": "scale_range: [min, max]"},
}
_REMOVED_ANY = {
    "fill_value": "fill",
    "mask_fill_value": "fill_mask",
    "value": "fill",
    "mask_value": "fill_mask",
    "cval": "fill",
    "cval_mask": "fill_mask",
    "mode": "border_mode",
    "always_apply": "p: 1.0",
}

# Deprecation warnings that do not change what the transform does (it still works).
_HARMLESS_WARNINGS = (r"ShiftScaleRotate is a special case of Affine",)


def import_albumentations():
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    return A


def transform_names() -> list[str]:
    """Names of the albumentations transforms a recipe step may use."""
    A = import_albumentations()
    names = []
    for name in dir(A):
        obj = getattr(A, name)
        if (not name.startswith("_") and name not in _NOT_STEPS and isinstance(obj, type)
                and issubclass(obj, A.BasicTransform)):
            names.append(name)
    return names


def mean_std(normalize: Any = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) in [0, 1] from a recipe ``Normalize``, a mapping, or None (CIFAR-10)."""
    if normalize is None:
        return CIFAR_MEAN, CIFAR_STD
    if isinstance(normalize, dict):
        return tuple(normalize.get("mean", CIFAR_MEAN)), tuple(normalize.get("std", CIFAR_STD))
    return tuple(normalize.mean), tuple(normalize.std)


def mean_fill(mean: tuple[float, ...]) -> tuple[int, ...]:
    """``fill: mean``: the data set mean colour as uint8 values, one per channel."""
    return tuple(int(round(float(m) * 255)) for m in mean)


def split_step(step: Any) -> tuple[str, dict[str, Any]]:
    """``{Name: {args}}`` -> (Name, args); raises ValueError for any other shape."""
    if not isinstance(step, dict) or len(step) != 1:
        raise ValueError("each step must be a single-key mapping {TransformName: {arg: value}}")
    (name, args), = step.items()
    if args is None:
        args = {}
    if not isinstance(name, str) or not isinstance(args, dict):
        raise ValueError(f"step {name!r}: expected {{{name}: {{arg: value}}}}, got {type(args).__name__}")
    return name, dict(args)


def resolve_args(args: dict[str, Any], mean: tuple[float, ...]) -> dict[str, Any]:
    """The albumentations arguments: ``fill: mean`` becomes the mean colour tuple."""
    out = dict(args)
    for key in ("fill", "fill_mask"):
        if isinstance(out.get(key), str) and out[key] == "mean":
            out[key] = mean_fill(mean)
    return out


def accepted_args(cls: type) -> set[str]:
    """Arguments a transform really uses: in ``__init__``'s signature AND its ``InitSchema``.

    albumentations validates the arguments through ``InitSchema`` and calls ``__init__`` only
    with the validated fields, so an argument missing from either is silently dropped.
    """
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    schema = getattr(cls, "InitSchema", None)
    fields = getattr(schema, "model_fields", None)
    if fields is not None:
        params &= set(fields)
    return params - {"strict"}


def removed_arg(name: str, arg: str) -> str | None:
    """The replacement for an albumentations 1.x argument, or None."""
    return _REMOVED_FOR.get(name, {}).get(arg) or _REMOVED_ANY.get(arg)


def make_transform(name: str, args: dict[str, Any], strict_warnings: bool = True):
    """Instantiate ``A.<name>(**args)``; with ``strict_warnings`` any warning is an error."""
    A = import_albumentations()
    cls = getattr(A, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error" if strict_warnings else "default")
        for pattern in _HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        return cls(**args)


def _mixed_hole_units(args: dict[str, Any]) -> bool:
    # albumentations decides pixels-or-fractions from hole_height_range alone.
    kinds = set()
    for key in ("hole_height_range", "hole_width_range"):
        rng = args.get(key, (0.1, 0.2))
        if isinstance(rng, (list, tuple)) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng):
            kinds.add(rng[1] >= 1)
    return len(kinds) > 1


def _instantiation_problems(name: str, args: dict[str, Any]) -> Iterator[tuple[str, str]]:
    try:
        make_transform(name, args)
    except Warning as w:  # a silent fallback in albumentations: refuse it
        yield "", f"albumentations warns: {w}"
    except ValueError as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            # One problem per field; the branches of a union (tuple | float) are merged.
            by_field: dict[str, tuple[list[str], Any]] = {}
            for err in cause.errors():
                loc = err.get("loc", ())
                field = str(loc[0]) if loc else ""
                msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ").rstrip(".")
                msgs, _ = by_field.setdefault(field, ([], err.get("input")))
                if msg not in msgs:
                    msgs.append(msg)
            for field, (msgs, got) in by_field.items():
                shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
                yield (f".{field}" if field else ""), " or ".join(msgs) + shown
        else:
            yield "", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except Exception as exc:  # TypeError and friends: report, never crash the loader
        yield "", f"{type(exc).__name__}: {exc}"


def check_steps(steps: list[dict]) -> list[tuple[str, str]]:
    """Validate ``data.augment``; return (where, message) pairs, empty when all is well.

    ``where`` is a suffix such as ``"[2].CoarseDropout.max_holes"`` (the caller prefixes
    ``data.augment``). Checks, per step: a single-key mapping; a known albumentations 2.x
    transform (with close matches); every argument accepted by it (removed 1.x names are
    reported with their 2.x replacement); that building it raises neither a validation
    error nor any warning; ``Normalize`` only as the last step.
    """
    if not steps:
        return []
    problems: list[tuple[str, str]] = []
    names = None
    last_real = max((i for i, s in enumerate(steps)
                     if not (isinstance(s, dict) and len(s) == 1 and next(iter(s)) in NOOP_STEPS)),
                    default=-1)
    for i, step in enumerate(steps):
        at = f"[{i}]"
        try:
            name, args = split_step(step)
        except ValueError as exc:
            problems.append((at, str(exc)))
            continue
        if names is None:
            names = transform_names()
        if name not in names:
            if name in _NOT_STEPS:
                problems.append((at, f"{name!r} is not an image augmentation"))
            else:
                problems.append((at, f"unknown augmentation {name!r}{did_you_mean(name, names)}"))
            continue
        if name in _NEEDS_TARGETS:
            problems.append((f"{at}.{name}", "needs targets cifarctl does not provide "
                                             "(masks, boxes or callables)"))
            continue
        where = f"{at}.{name}"
        cls = getattr(import_albumentations(), name)
        allowed = accepted_args(cls)
        bad = False
        for arg in args:
            if arg in allowed:
                continue
            bad = True
            new = removed_arg(name, arg)
            if new is not None:
                problems.append((f"{where}.{arg}", f"{arg!r} was removed in albumentations 2: use {new}"))
            else:
                problems.append((f"{where}.{arg}", f"unknown argument for {name}"
                                                   f"{did_you_mean(arg, sorted(allowed))}"))
        for key in ("fill", "fill_mask"):
            if key in args and isinstance(args[key], str) and args[key] not in (
                    "mean", "random", "random_uniform", "inpaint_telea", "inpaint_ns"):
                problems.append((f"{where}.{key}", f"unknown fill {args[key]!r} (a number, "
                                                   "[r, g, b] or 'mean')"))
                bad = True
        if name == "Normalize" and i != last_real:
            problems.append((where, "Normalize must be the last step (cifarctl normalizes last; "
                                    "or leave it out and set data.normalize)"))
        if name == "CoarseDropout" and _mixed_hole_units(args):
            problems.append((f"{where}.hole_width_range", "hole_height_range and hole_width_range "
                             "must both be pixels (ints >= 1) or both fractions of the size in (0, 1)"))
            bad = True
        if bad:
            continue
        for suffix, message in _instantiation_problems(name, resolve_args(args, CIFAR_MEAN)):
            problems.append((where + suffix, message))
    return problems


IMAGE_SHAPE = (32, 32, 3)  # CIFAR-10: what every step receives, and what the model is fed


def augment_problems(steps: list, image_size: int = 32) -> list[tuple[str, str]]:
    """:func:`check_steps`, then :func:`geometry_problems` on ``image_size`` square images when
    those pass: (where, message) pairs, empty when the pipeline is clean."""
    if not steps:
        return []
    return check_steps(steps) or geometry_problems(steps, (image_size, image_size, 3))


def geometry_problems(steps: list[dict], shape: tuple[int, int, int] = IMAGE_SHAPE) -> list[tuple[str, str]]:
    """Run the (valid) steps over blank ``shape`` images, each step forced on (and also
    skipped when its p < 1): a step that cannot take a size it may get (a 40x40 crop of a
    32x32 image), or a pipeline that does not always end at ``shape``, is a problem found
    at validation, before any run folder exists."""
    def size(s):
        return f"{s[1]}x{s[0]}" + (f"x{s[2]}" if len(s) == 3 and s[2] != shape[2] else "")

    shapes = {tuple(shape)}
    for i, step in enumerate(steps):
        name, args = split_step(step)
        if name in NOOP_STEPS or name == "Normalize":
            continue
        where = f"[{i}].{name}"
        t = make_transform(name, resolve_args(args, CIFAR_MEAN), strict_warnings=False)
        after = set()
        for before in sorted(shapes):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = t(image=np.zeros(before, np.uint8), force_apply=True)["image"]
                after.add(tuple(np.asarray(out).shape))
            except Exception as exc:  # noqa: BLE001 - albumentations' own words, in one line
                why = (str(exc).splitlines() or [type(exc).__name__])[0]
                return [(where, f"cannot be applied to the {size(before)} image it gets here ({why}): "
                                f"the data's images are {size(shape)}; pad first (PadIfNeeded) or crop smaller")]
            if getattr(t, "p", 1.0) < 1:
                after.add(before)
        shapes = after
        if len(shapes) > 16:
            break  # sizes that vary this much are refused below
    if shapes != {tuple(shape)}:
        got = " or ".join(size(s) for s in sorted(shapes))
        return [("", f"the steps turn a {size(shape)} image into {got}: they must always end at "
                     f"{size(shape)}, the size of the test images (e.g. PadIfNeeded {shape[0] + 8}, then RandomCrop "
                     f"{shape[0]}; "
                     "a step that changes the size needs p: 1.0 unless a later crop fixes it)")]
    return []
