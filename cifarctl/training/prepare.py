"""Recipe -> a ready :class:`~cifarctl.training.engine.Trainer`: seeds, data on the device,
model, optimizer, schedule, loss, precision, lookahead, and (``max_lr: auto``) the LR
range test that picks the peak learning rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cifarctl.data import load_cifar, resolve_source
from cifarctl.data.sources import hold_out
from cifarctl.errors import RecipeError
from cifarctl.recipe.schema import Recipe
from cifarctl.training import distributed
from cifarctl.training.batches import Batches
from cifarctl.training.builders import (
    build_loss,
    build_model,
    build_optimizer,
    enter_device,
    is_max_lr_auto,
    precision_for,
    resolve_device,
    seed_everything,
    set_determinism,
    uses_channels_last,
    with_num_classes,
)
from cifarctl.training.ema import build_early_stop, build_ema
from cifarctl.training.engine import Trainer
from cifarctl.training.lookahead import build_lookahead
from cifarctl.training.lrfind import choose_max_lr, max_lr_notice
from cifarctl.training.model_hooks import init_from_data
from cifarctl.training.schedules import build_scheduler


def prepare(
    recipe: Recipe,
    *,
    data_source: str | None = None,
    device: str | torch.device = "auto",
    seed: int | None = None,
    cache_dir=None,
    progress: bool = False,
    rank: int = 0,
    world_size: int = 1,
    lr_find_progress: Callable | None = None,
) -> Trainer:
    """Seed, load the data onto the device, build model/optimizer/scheduler/loss/precision.

    ``data_source`` overrides ``recipe.data.source`` (else ``$CIFARCTL_DATA``, else
    cifar10); ``seed`` overrides ``recipe.seed``. ``max_lr: auto`` runs the LR range test
    on the loaded data first (``lr_find_progress(i, n, lr, loss)`` after each of its steps):
    ``trainer.recipe`` then holds the chosen number and ``trainer.lr_find`` the sweep.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    seed = recipe.seed if seed is None else seed
    seed_everything(seed)
    notices: list[str] = []
    enter_device(dev)
    set_determinism(recipe.deterministic, dev)

    source = resolve_source(data_source or recipe.data.source)
    d = recipe.data
    with distributed.main_first(world_size):  # rank 0 decodes and caches, the others read the cache
        arrays = load_cifar(source, cache_dir=cache_dir, progress=progress,
                            train_subset=d.train_subset, test_subset=d.test_subset, seed=seed,
                            image_size=d.image_size, label_kind=d.label_kind)
    recipe = with_num_classes(recipe, len(arrays.classes), source)
    val = None
    if d.val_split:

        val = hold_out(arrays, d.val_split, seed)  # before the LR range test: it never sees them
    if d.batch_size > len(arrays.train_y):  # would silently train on smaller batches
        raise RecipeError(recipe.origin, [f"data.batch_size: {d.batch_size} is larger than the "
                                          f"{len(arrays.train_y)} train images of {source}"])
    recipe, lr_find = _resolve_auto_max_lr(recipe, arrays, dev, lr_find_progress, notices)
    if world_size > 1 and lr_find is not None:  # every rank ran the range test: rank 0's choice
        recipe = distributed.broadcast_object(recipe)

    model = build_model(recipe).to(dev)
    if uses_channels_last(recipe, dev):
        model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    raw_model = model

    generator = torch.Generator(device=dev)
    generator.manual_seed(seed)
    batches = Batches(recipe, arrays, dev, generator, rank, world_size, notices)
    init_from_data(raw_model, arrays.train_x if batches.x is None else batches.x,
                   batches.normalize.normalize_only, dev)  # model.data_init; a resume then loads over it
    if world_size > 1:  # DDP starts every rank from rank 0's weights; raw_model is what is saved
        model, raw_model = distributed.wrap_model(raw_model, dev, recipe.sync_bn, batches.batch_size, notices)
    if recipe.compile:  # every shape is fixed by design (full batches, padded eval chunks)
        model = torch.compile(model, dynamic=False)

    amp_dtype, note = precision_for(recipe.precision, dev)
    if note:
        notices.append(note)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    optimizer = build_optimizer(model, recipe)
    steps = batches.steps_per_epoch
    scheduler, per_batch = build_scheduler(recipe, optimizer, steps)
    lookahead = build_lookahead(recipe, raw_model, recipe.epochs * steps)
    ema = build_ema(recipe, raw_model)

    max_params = recipe.target.max_params
    if max_params is not None and params > max_params:
        notices.append(f"warning: {recipe.model} has {params:,} params, over target.max_params "
                       f"{max_params:,}")

    to_dev = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
    test_x = to_dev(np.ascontiguousarray(arrays.test_x.transpose(0, 3, 1, 2)))
    return Trainer(
        recipe=recipe, device=dev, model=model, raw_model=raw_model, optimizer=optimizer,
        scheduler=scheduler, sched_per_batch=per_batch, scaler=scaler, amp_dtype=amp_dtype,
        loss_fn=build_loss(recipe), batches=batches, normalize=batches.normalize.normalize_only,
        test_x=test_x, test_y=to_dev(arrays.test_y),
        val_x=None if val is None else to_dev(np.ascontiguousarray(val[0].transpose(0, 3, 1, 2))),
        val_y=None if val is None else to_dev(val[1]), classes=list(arrays.classes), data_source=source,
        generator=generator, params=params, steps_per_epoch=steps, rank=rank, world_size=world_size,
        notices=notices,
        lr_find=lr_find, lookahead=lookahead, ema=ema, early_stop=build_early_stop(recipe, val is not None),
    )


def _resolve_auto_max_lr(recipe: Recipe, arrays, dev: torch.device, progress, notices: list[str]):
    """(recipe with a numeric max_lr, LRFindResult or None): runs the range test for ``auto``.

    The test builds its own model and restores every RNG it touches, so training then
    starts exactly as if the chosen number had been written in the recipe.
    """
    if not is_max_lr_auto(recipe):
        return recipe, None

    max_lr, result = choose_max_lr(recipe, data=arrays, device=dev, progress=progress)
    resolved = recipe.with_value("scheduler.max_lr", float(max_lr))
    notices.append(max_lr_notice(result, max_lr))
    return resolved, result
