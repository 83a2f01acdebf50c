"""Recipe -> torch objects: device, precision (and its autocast), seeds, model, loss, optimizer.

Used by training (:mod:`cifarctl.training.prepare`), the LR range test and inference
(:mod:`cifarctl.analysis.inference`), so they all make the same choices. Schedules are
built in :mod:`cifarctl.training.schedules`.
"""

from __future__ import annotations

import functools
import json
import os
import random
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from cifarctl.errors import RecipeError, UsageError
from cifarctl.recipe.schema import Recipe
from cifarctl import registry

LR_AUTO_UNRESOLVED = (
    "scheduler.max_lr: auto is resolved by the LR range test before the scheduler is built "
    "(prepare does it; from Python: cifarctl.training.lrfind.choose_max_lr)"
)


def resolve_device(spec: str | None = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: no CUDA device is available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    elif dev.type != "cpu":
        raise UsageError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")
    return dev


def uses_channels_last(recipe: Recipe, device: torch.device) -> bool:
    """Whether the model and its batches use channels_last (NHWC): ``recipe.channels_last``
    on CUDA and on the CPU, where it was measured faster for every small net (docs/benchmarks.md,
    "channels_last"); other devices stay NCHW.

    Not on CUDA for a net with GroupNorm (s8_gn, and s8_ln's ``GroupNorm(1, C)``): ATen's
    CUDA group_norm makes its input contiguous (NCHW), so every norm would copy NHWC ->
    NCHW -> NHWC, forward and backward. Its CPU kernel has an NHWC path."""
    if not recipe.channels_last or device.type not in ("cuda", "cpu"):
        return False
    return device.type == "cpu" or not _has_group_norm(recipe.model, json.dumps(recipe.model_args, sort_keys=True))


@functools.lru_cache(maxsize=32)
def _has_group_norm(model: str, args_json: str) -> bool:
    """Whether the model holds a GroupNorm (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        net = registry.create_model(model, **json.loads(args_json))
    return any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())


def precision_for(precision: str, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """(autocast dtype or None for fp32, a notice or None).

    ``auto`` = bf16 autocast on CUDA GPUs with bf16 in hardware (Ampere and later), fp16 with
    a GradScaler on the others (T4, V100), fp32 elsewhere; bf16/fp16 apply to CUDA only.
    ``torch.cuda.is_bf16_supported()`` counts emulated bf16 by default (True on a T4 or a
    V100, where it is slow): asked here without emulation.
    """
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            return None, f"precision {precision} applies to CUDA only: training in fp32 on {device}"
        return None, None
    if precision == "fp32":
        return None, None
    if precision == "fp16":
        return torch.float16, None
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16, None
    name = torch.cuda.get_device_name(device)
    if precision == "bf16":
        if torch.cuda.is_bf16_supported(including_emulation=True):
            return torch.bfloat16, (f"precision bf16: {name} has no bf16 in hardware, it is emulated "
                                    "(slow); precision: auto or fp16 uses fp16 with a GradScaler")
        raise UsageError(f"precision bf16: {name} has no bf16 support; use precision: fp16 or auto")
    return torch.float16, f"{name} has no bf16 in hardware: precision auto uses fp16 with a GradScaler"


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The context of a forward pass: ``torch.autocast`` to ``dtype`` (bf16/fp16) on
    ``device``, or nothing for fp32 (``dtype`` None, see :func:`precision_for`)."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def enter_device(device: torch.device) -> None:
    """Make ``cuda:N`` this process's current CUDA device, so that what belongs to the
    current device (events, streams, pinned-memory and cuBLAS handles) is ``cuda:N``'s."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """The recipe's ``deterministic``: on CUDA, deterministic kernels (and cuBLAS's fixed
    workspace, which must be set before its first use) or cuDNN autotuning for speed. The
    CPU kernels used here are deterministic either way; nothing changes for a CPU run."""
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=False)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def build_model(recipe: Recipe):
    """The recipe's model, on the CPU (it outputs plain logits)."""
    return registry.create_model(recipe.model, **recipe.model_args)


def with_num_classes(recipe: Recipe, k: int, source: str) -> Recipe:
    """``recipe`` whose model has ``k`` outputs, the data's class count: ``model_args.num_classes``
    set when the data has other than the models' default 10 (so the checkpoint's recipe rebuilds the
    same model); a recipe that fixes another number is an error naming both."""
    fixed = recipe.model_args.get("num_classes")
    if fixed is not None and fixed != k:
        raise RecipeError(recipe.origin, [f"model_args.num_classes: {fixed}, but the data {source} has {k} classes: "
                                          "remove model_args.num_classes (it is taken from the data) or use data "
                                          f"with {fixed} classes"])
    if fixed is None and k != 10:
        problems = registry.check_model_args(recipe.model, {**recipe.model_args, "num_classes": k})
        if problems:  # a model without the argument, or one that takes fewer classes
            raise RecipeError(f"{recipe.origin} (num_classes from the data ({k} classes))", problems)
        recipe = recipe.with_value("model_args.num_classes", k)
    return recipe


def build_loss(recipe: Recipe):
    """cross_entropy (with label smoothing), or nll on the model's outputs as given."""
    if recipe.loss.name == "cross_entropy":
        smoothing = recipe.loss.label_smoothing
        return lambda out, y: F.cross_entropy(out, y, label_smoothing=smoothing)
    return F.nll_loss


def build_optimizer(model, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over ``model``'s parameters, with torch's fused kernels on every
    device that has them (CUDA and the CPU among them): one kernel per step instead of
    several per tensor, and a GradScaler step without a host read.

    Fused SGD's momentum buffers start at zero here: torch makes them with ``empty_like``
    on the first step, and its kernel returns early on a GradScaler overflow step, which
    would leave them uninitialised. With zeros (and no dampening) the first real step is
    torch's first step: buffer = gradient."""
    o = recipe.optimizer
    params = param_groups(model, o)
    fused = {"fused": True} if _fusable(model) else {}
    try:
        if o.name == "sgd":
            opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                                  weight_decay=o.weight_decay, **fused)
            if fused and o.momentum:
                for group in opt.param_groups:
                    for p in group["params"]:
                        opt.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            return opt
        cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
        return cls(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay, **fused)
    except ValueError as exc:  # e.g. nesterov without momentum
        raise UsageError(f"optimizer: {exc}") from None


def _fusable(model) -> bool:
    """Every trainable parameter is a floating-point tensor on a device with torch's fused
    optimizer kernels."""
    devices = _get_fused_kernels_supported_devices()
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(p.device.type in devices and p.is_floating_point() for p in params)


def param_groups(model, o) -> list:
    """``model``'s parameters: one group, or (SGD ``norm_lr_scale`` != 1) the normalization
    layers' parameters in a second group with lr x scale and weight_decay / scale.

    The second group carries ``lr_scale`` so schedulers that set absolute lrs (OneCycle,
    a rebuilt schedule) can scale it too.
    """
    scale = getattr(o, "norm_lr_scale", 1.0)
    if scale == 1.0:
        return list(model.parameters())
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    norm_ids = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
    rest = [p for p in model.parameters() if id(p) not in norm_ids]
    norm = [p for p in model.parameters() if id(p) in norm_ids]
    groups = [{"params": rest}] if rest else []
    if norm:
        groups.append({"params": norm, "lr": o.lr * scale, "weight_decay": o.weight_decay / scale,
                       "lr_scale": scale})
    return groups


def group_lrs(optimizer, lr: float) -> float | list[float]:
    """``lr`` for every group (a plain float when no group has an ``lr_scale``)."""
    if not any("lr_scale" in g for g in optimizer.param_groups):
        return lr
    return [lr * g.get("lr_scale", 1.0) for g in optimizer.param_groups]


def peak_lr(recipe: Recipe) -> float | None:
    """The OneCycle peak learning rate written in the recipe (None for other schedules).

    ``max_lr: auto`` must have been replaced by the LR range test's number first
    (:func:`cifarctl.training.lrfind.choose_max_lr`); here it is a UsageError.
    """
    s = recipe.scheduler
    if s.name != "onecycle":
        return None
    if s.max_lr == "auto":
        raise UsageError(LR_AUTO_UNRESOLVED)
    return float(s.max_lr)


def is_max_lr_auto(recipe: Recipe) -> bool:
    """True when the recipe's OneCycle peak lr is ``auto`` (the LR range test picks it)."""
    return recipe.scheduler.name == "onecycle" and recipe.scheduler.max_lr == "auto"


def check_runnable(recipe: Recipe) -> None:
    """Cheap checks done before any data is loaded or folder created."""
    if not is_max_lr_auto(recipe):
        peak_lr(recipe)
