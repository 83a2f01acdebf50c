"""A trainer's state as a checkpoint dict, and back.

The file side (atomic writes, ``weights_only`` loading, the format marker) is
:mod:`cifarctl.checkpoints`; this module decides what a checkpoint holds: the unwrapped model,
optimizer, scheduler, scaler, lookahead, the EMA weights and early-stop state, every RNG, counters, the mid-epoch progress,
history, and the resolved recipe.
"""

from __future__ import annotations

import torch

from cifarctl import __version__
from cifarctl.errors import UsageError
from cifarctl.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, capture_rng, restore_rng
from cifarctl.training import distributed
from cifarctl.training.engine import Trainer
from cifarctl.training.schedules import advance, build_scheduler


def state_dict(t: Trainer) -> dict:
    """The checkpoint of ``t`` (see :mod:`cifarctl.checkpoints` for the file)."""
    r = t.recipe
    return {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
        "model": t.raw_model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict() if t.scheduler is not None else None,
        "scaler": t.scaler.state_dict() if t.scaler.is_enabled() else None,
        "lookahead": t.lookahead.state_dict() if t.lookahead is not None else None,
        "ema": t.ema.state_dict() if t.ema is not None else None,
        "early_stop": t.early_stop.state_dict() if t.early_stop is not None else None,
        **_rngs(t),
        "epoch": t.epoch, "step": t.step, "progress": dict(t.progress) if t.progress else None,
        "world_size": t.world_size,
        "best": {"acc": t.best_acc, "epoch": t.best_epoch},
        "history": [dict(h) for h in t.history],
        "recipe": r.to_dict(), "model_name": r.model, "model_args": dict(r.model_args),
        "params": t.params, "classes": list(t.classes), "data_source": t.data_source,
        "normalize": {"mean": list(r.data.normalize.mean), "std": list(r.data.normalize.std)},
        "cifarctl_version": __version__,
    }


def _rngs(t: Trainer) -> dict:
    """``rng``: this process's RNGs; data-parallel, ``rng_ranks`` too: every rank's (each
    rank's dropout draws from its own generators), gathered on rank 0 over the host."""
    rng = capture_rng(t.generator, t.device)
    return {"rng": rng, "rng_ranks": distributed.gather_on_main(rng) if t.world_size > 1 else None}


def rank_rng(ckpt: dict, rank: int, world_size: int) -> dict:
    """The RNG states rank ``rank`` of ``world_size`` resumes with: its own when the
    checkpoint has one per rank for as many ranks, else rank 0's."""
    ranks = ckpt.get("rng_ranks")
    return ranks[rank] if ranks and len(ranks) == world_size else ckpt["rng"]


_SHOWN = 3  # mismatched keys named in the one-line error, per kind


def _shape(v) -> str:
    return "x".join(map(str, v.shape)) or "scalar" if isinstance(v, torch.Tensor) else type(v).__name__


def weights_mismatch(model: torch.nn.Module, state) -> str | None:
    """How a checkpoint's model state dict does not fit ``model``, in one line, or None when
    it fits: the first keys whose shapes differ (both shapes), then the counts and first
    names of missing and unexpected keys, e.g. ``conv10.weight: checkpoint 11x32x1x1, model
    10x32x1x1``. (``load_state_dict``'s own message runs over many lines and is cut.)"""
    if not isinstance(state, dict):
        return f"its model weights are a {type(state).__name__}, not a state dict"
    own = model.state_dict()
    shapes = [f"{k}: checkpoint {_shape(v)}, model {_shape(own[k])}" for k, v in state.items()
              if k in own and (not isinstance(v, torch.Tensor) or v.shape != own[k].shape)]
    missing = [k for k in own if k not in state]
    unexpected = [str(k) for k in state if k not in own]
    parts = []
    for what, items in (("shape differs" if len(shapes) == 1 else "shapes differ", shapes),
                        ("missing from the checkpoint", missing), ("unexpected in the checkpoint", unexpected)):
        if items:
            more = f"; and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
            parts.append(f"{len(items)} {what} ({'; '.join(items[:_SHOWN])}{more})")
    return ", ".join(parts) or None


def load_state_dict(t: Trainer, ckpt: dict, *, scheduler: bool = True) -> None:
    """Restore model, optimizer, scheduler, scaler, RNGs and counters from a checkpoint.

    ``scheduler=False`` leaves the schedule alone (see :func:`rebuild_scheduler`). Weights
    that do not fit the model are a ``ValueError`` saying how (:func:`weights_mismatch`).
    """
    problem = weights_mismatch(t.raw_model, ckpt["model"])
    if problem:
        raise ValueError(f"the weights do not fit model {t.recipe.model!r}: {problem}")
    t.raw_model.load_state_dict(ckpt["model"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    _match_parameter_layout(t.optimizer)
    if scheduler and t.scheduler is not None and ckpt.get("scheduler") is not None:
        t.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler") is not None and t.scaler.is_enabled():
        t.scaler.load_state_dict(ckpt["scaler"])
    if t.lookahead is not None and ckpt.get("lookahead") is not None:
        t.lookahead.load_state_dict(ckpt["lookahead"])
    elif t.lookahead is not None:  # lookahead added with --force: it starts from the loaded weights
        t.lookahead.reset()
    if t.ema is not None and ckpt.get("ema") is not None:
        t.ema.load_state_dict(ckpt["ema"])
    elif t.ema is not None:  # ema added with --force: the average starts from the loaded weights
        t.ema.reset(t.raw_model)
    if t.early_stop is not None and ckpt.get("early_stop") is not None:
        t.early_stop.load_state_dict(ckpt["early_stop"])
        if not scheduler:  # a changed recipe (--force) trains on: the patience starts afresh
            t.early_stop.bad_epochs, t.early_stop.reason = 0, None
    restore_rng(rank_rng(ckpt, t.rank, t.world_size), t.generator, t.device)
    t.epoch, t.step = int(ckpt["epoch"]), int(ckpt["step"])
    t.progress = ckpt.get("progress")
    t.best_acc = float(ckpt["best"]["acc"])
    t.best_epoch = int(ckpt["best"]["epoch"])
    t.history = [dict(h) for h in ckpt.get("history", [])]


@torch.no_grad()
def _match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (momentum, Adam's moments) its parameter's
    memory layout. A checkpoint holds them contiguous (host copies), while a channels_last
    model's parameters are NHWC; torch's fused kernels walk parameter, gradient and state
    as flat arrays, so a state in another layout than its parameter would be read
    scrambled after a resume."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for k, v in optimizer.state.get(p, {}).items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    optimizer.state[p][k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def rebuild_scheduler(t: Trainer) -> None:
    """A fresh schedule from the (changed, ``--force``) recipe, advanced to where ``t`` is.

    Used instead of the checkpoint's scheduler state when the recipe changed on resume
    (e.g. more epochs: OneCycle's total_steps grows). ReduceLROnPlateau starts afresh.
    """
    if t.recipe.scheduler.name != "onecycle":  # the others start from the optimizer's lr
        for g in t.optimizer.param_groups:
            g["lr"] = g["initial_lr"] = t.recipe.optimizer.lr * g.get("lr_scale", 1.0)
    t.scheduler, t.sched_per_batch = build_scheduler(t.recipe, t.optimizer, t.steps_per_epoch)
    if t.lookahead is not None:
        t.lookahead.total_steps = t.recipe.epochs * t.steps_per_epoch
    if t.scheduler is None or isinstance(t.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return
    n = t.step if t.sched_per_batch else t.epoch
    if t.sched_per_batch and n >= t.scheduler.total_steps:
        raise UsageError(f"the new schedule has {t.scheduler.total_steps} steps but the run already did {n}")
    advance(t.scheduler, n)
