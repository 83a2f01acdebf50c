"""Data-parallel training under torchrun: process group, ranks, reductions.

``torchrun --nproc_per_node N -m cifarctl train RECIPE`` (or ``cifarctl train --nproc N``,
which re-launches itself that way: :mod:`cifarctl.cli.launch`) runs N copies of the same
command. Each one:

- joins the process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): gloo on CPU, nccl on CUDA with
  ``cuda:LOCAL_RANK`` as its device (:func:`process_group`);
- draws the same permutation (same seed) and trains on its slice of every global batch
  (``data.batch_size / N`` images, see :mod:`cifarctl.training.batches`) through
  ``DistributedDataParallel``, with BatchNorm synchronised on CUDA when the recipe says
  ``sync_bn: true`` (:func:`wrap_model`; torch's ``SyncBatchNorm`` has no CPU kernel);
- sums metrics and the loss guards over ranks at display points (:func:`all_reduce_sum`,
  :func:`all_reduce_min`), evaluates its contiguous share of the test split
  (:func:`shard_range`), and agrees with the others on stop requests and display points
  over a host-side channel (:class:`Agreement`, :func:`agree_stop`), so every rank leaves
  the loop at the same step with the same error or signal. The only collective in a
  training step is DDP's gradient all-reduce.

Only rank 0 creates and writes the run folder and prints; :class:`SilentFiles` is what the
other ranks write to. The checkpoint holds the unwrapped model, so its keys are those of a
single-process run. A plain run (no torchrun, or ``WORLD_SIZE=1``) touches none of this.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from cifarctl.checkpoints import checkpoint_path
from cifarctl.errors import EXIT_FAILURE, CifarctlError, UsageError
from cifarctl.training.builders import resolve_device

_control = None  # the gloo group for host-side flags when the main group is nccl

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SIGNALS = ("SIGINT", "SIGHUP", "SIGTERM")  # stop requests, by priority (an all_reduce MAX picks one)


# ------------------------------------------------------------------------ ranks
@dataclass(frozen=True)
class Ranks:
    """Where this process stands: rank 0 of 1 outside torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def device(self, dev):
        """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA, ``dev`` otherwise."""
        if self.active and dev.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return dev


def launched() -> bool:
    """Started by torchrun with more than one process (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def env_rank() -> int:
    """``RANK`` from torchrun's environment (0 outside it), before any process group."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def current() -> Ranks:
    """The ranks of the initialised process group, or ``Ranks()`` without one."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return Ranks()


@contextmanager
def process_group(device: str = "auto") -> Iterator[Ranks]:
    """Join torchrun's process group for the duration of the block (nothing outside torchrun).

    gloo when ``device`` resolves to the CPU, nccl (with ``cuda:LOCAL_RANK`` set as the
    current device) for CUDA. On a normal exit or an error that every rank raised together
    (any :class:`~cifarctl.errors.CifarctlError` but exit code 1: usage errors, divergence,
    signals), the ranks wait for each other before leaving, so rank 0 finishes writing the
    run folder before torchrun sees a rank exit; then the group is destroyed.
    """
    if not launched() or dist.is_initialized():
        yield current()
        return
    missing = [v for v in TORCHRUN_ENV if not os.environ.get(v)]
    if missing:
        raise UsageError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start it with torchrun "
                         "or `cifarctl train --nproc N`")

    local = int(os.environ["LOCAL_RANK"])
    dev = resolve_device(device)
    global _control
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s): "
                             "use at most one process per GPU")
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
        _control = dist.new_group(backend="gloo")  # host flags: no device sync to read them
    else:
        dist.init_process_group("gloo")
        _control = None  # the default group is gloo already
    agreed = failed = False
    try:
        yield current()
        agreed = True
    except CifarctlError as exc:
        agreed, failed = exc.exit_code != EXIT_FAILURE, True
        raise
    except BaseException:
        failed = True
        raise
    finally:
        try:
            if agreed:
                dist.barrier()
        finally:
            _control = None
            dist.destroy_process_group()
            if failed:
                _exit_quietly()


def _exit_quietly() -> None:
    """Ignore SIGTERM from here on: when a rank exits with an error, torchrun terminates the
    others, and rank 0 has already written everything (it is on its way out)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


# ------------------------------------------------------------------------ model
def wrap_model(model, device, sync_bn: bool, per_rank: int, notices: list[str]):
    """(DistributedDataParallel model to train, the unwrapped model to save).

    ``sync_bn`` converts every BatchNorm to torch's ``SyncBatchNorm`` (batch statistics over
    all ranks) on CUDA; on the CPU, where it has no kernel, BatchNorm stays per process and a
    notice says so. The state_dict keys stay those of the plain model. Every trainable
    parameter gets a gradient at every step (models freeze by
    ``frozen_parameters``, :mod:`cifarctl.training.model_hooks`), so no
    ``find_unused_parameters``. No ``broadcast_buffers``: it would add a collective before
    every forward; a training forward normalizes with batch statistics, so each rank's
    running statistics change nothing in training, and rank 0's are broadcast before every
    evaluation (:func:`evaluate_shares`) and are what the checkpoint holds.
    """
    synced = sync_bn and device.type == "cuda"
    if synced:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        layers = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
        # torch's SyncBatchNorm drops empty ranks with count_all[mask] (a boolean mask): the
        # host waits for the GPU in every such layer, every step. Kept (a copy of torch's
        # kernel-level function would be ours to maintain), and said.
        notices.append(f"warning: sync_bn: torch's SyncBatchNorm waits for the GPU in each of the {layers} "
                       "BatchNorm layers every step (a host sync per layer); per-process BatchNorm "
                       "(sync_bn: false) has none")
    elif sync_bn:
        notices.append("sync_bn applies to CUDA only (torch's SyncBatchNorm): BatchNorm statistics stay "
                       "per process on the CPU")
    ids = [device.index] if device.type == "cuda" else None
    notices.append(f"data-parallel: {current().world_size} processes ({'nccl' if ids else 'gloo'}), "
                   f"{per_rank} images each per step, BatchNorm {'synchronised' if synced else 'per process'}")
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None,
                                  broadcast_buffers=False)
    return ddp, model


def evaluate_shares(evaluate, t, x, y_all, model=None, **kwargs) -> dict:
    """Loss and accuracy of a whole split (``x``, ``y_all``), each rank evaluating its contiguous share.

    Every rank first takes rank 0's buffers, so the numbers are those of the checkpoint's
    model (``cifarctl eval`` agrees). The unwrapped model is called, not DDP's forward:
    the shares may differ by a batch, and DDP's forward runs collectives.
    """
    model = t.raw_model if model is None else model  # or the averaged weights (recipe ema)
    broadcast_buffers(model)
    lo, hi = shard_range(len(y_all), t.rank, t.world_size)
    y = y_all[lo:hi]
    part = evaluate(model, x[lo:hi], y, **kwargs)
    sums = torch.tensor([part["loss"] * max(len(y), 1), float((part["preds"] == y).sum()), float(len(y))],
                        dtype=torch.float64, device=t.device)
    loss_sum, correct, n = all_reduce_sum(sums).tolist()
    return {"loss": loss_sum / max(n, 1), "acc": 100.0 * correct / max(n, 1), "n": int(n)}


def broadcast_buffers(model) -> None:
    """Every rank takes rank 0's buffers (BatchNorm running statistics), as in the checkpoint:
    one broadcast of them all, flattened per dtype (what DDP does before each forward)."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for b in model.buffers():
        by_dtype.setdefault(b.dtype, []).append(b)
    for tensors in by_dtype.values():
        flat = _flatten_dense_tensors(tensors)
        dist.broadcast(flat, src=0)
        for b, v in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
            b.copy_(v)


# ------------------------------------------------------------------------ agreement
def all_reduce_sum(t):
    """The sum of ``t`` over ranks (a new tensor; ``t`` is left alone)."""
    out = t.clone()
    dist.all_reduce(out)
    return out


def all_reduce_min(t):
    """The minimum of ``t`` over ranks (a new tensor)."""
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.MIN)
    return out


def _stop_code(name: str | None) -> int:
    return SIGNALS.index(name) + 1 if name in SIGNALS else (1 if name else 0)


def _stop_name(code: int) -> str | None:
    return SIGNALS[code - 1] if code else None


def agree_stop(trainer) -> str | None:
    """The stop request of any rank (SIGTERM over SIGINT), now set on every rank (blocking:
    between epochs only; a CPU tensor over the host-side group, so no device sync)."""
    flag = torch.tensor([_stop_code(trainer.stop_requested)], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_control)
    trainer.stop_requested = _stop_name(int(flag[0]))
    return trainer.stop_requested


class Agreement:
    """Stop requests and display wishes agreed by every rank without blocking on the device.

    After every :attr:`EVERY`-th step of an epoch each rank starts an asynchronous MAX
    all-reduce of its host flags (stop signal, rank 0's wish for a display point) over the
    host-side gloo group, and takes its result one step later, by when the few bytes have
    long crossed: every rank sees the same answer after the same step. A stop is agreed
    within :attr:`EVERY` + 1 steps; :meth:`close` at the epoch end takes any answer in flight.
    """

    EVERY = 4

    def __init__(self, trainer):
        self.t = trainer
        self.work = None
        self.flags = None

    def _take(self) -> tuple[int, int]:
        if self.work is None:
            return 0, 0
        self.work.wait()
        self.work = None
        stop, wish = (int(v) for v in self.flags)
        return stop, wish

    def poll(self, step: int, wish: bool) -> tuple[str | None, bool]:
        """(agreed stop request or None, whether this step is a display point) after the
        epoch's ``step``-th step (1-based)."""
        stop, display = self._take() if self.work is not None else (0, 0)
        if step % self.EVERY == 0:
            mine = _stop_code(self.t.stop_requested)
            self.flags = torch.tensor([mine, int(wish and self.t.rank == 0)], dtype=torch.int32)
            self.work = dist.all_reduce(self.flags, op=dist.ReduceOp.MAX, group=_control, async_op=True)
        if stop:
            self.t.stop_requested = _stop_name(stop)
        return (self.t.stop_requested if stop else None), bool(display)

    def close(self) -> None:
        """Take the answer in flight (every rank does, at the same step); a stop in it is
        kept in ``trainer.stop_requested`` for :func:`agree_stop`."""
        stop, _ = self._take()
        if stop:
            self.t.stop_requested = _stop_name(stop)


def gather_on_main(obj: Any) -> list | None:
    """Every rank's ``obj`` in rank order on rank 0 (None on the others), over the
    host-side group: picklable objects, no device sync."""
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0, group=_control)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn, ranks: Ranks):
    """``fn()`` run on rank 0 and its result given to every rank; an error is raised on all."""
    if not ranks.active:
        return fn()
    if ranks.main:
        try:
            result = fn()
        except Exception as exc:
            broadcast_object((None, (str(exc), getattr(exc, "exit_code", EXIT_FAILURE))))
            raise
        return broadcast_object((result, None))[0]
    result, error = broadcast_object(None)
    if error is not None:
        raise CifarctlError(*error)
    return result


@contextmanager
def main_first(world_size: int) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. decodes and caches the data), then the others."""
    if world_size <= 1:
        yield
        return
    if dist.get_rank() != 0:
        dist.barrier()
        yield
        return
    try:
        yield
    finally:
        dist.barrier()


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """This rank's contiguous share of ``n`` items: sizes differ by at most one, all covered once."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def check_resume(ckpt: dict, trainer, ckpt_path) -> None:
    """Refuse a resume whose step count no longer fits the number of processes.

    The final batch of an epoch depends on the number of processes (see
    :func:`cifarctl.training.batches.count_steps`): a run stopped mid-epoch continues with the same
    number; at an epoch boundary any number whose steps per epoch match will do.
    """
    saved = int(ckpt.get("world_size", 1))
    if saved == trainer.world_size:
        return
    how = f"resume it with {saved} process(es)" + (f" (--nproc {saved})" if saved > 1 else " (no torchrun)")
    if ckpt.get("progress"):
        raise UsageError(f"{ckpt_path} was saved mid-epoch by {saved} process(es) and this run has "
                         f"{trainer.world_size}: {how}")
    epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
    if step != epoch * trainer.steps_per_epoch:
        raise UsageError(f"{ckpt_path}: {saved} process(es) did {step} steps in {epoch} epoch(s) but "
                         f"{trainer.world_size} take {trainer.steps_per_epoch} per epoch: {how}")


class SilentFiles:
    """What ranks other than 0 write the run folder's files to: nothing."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.last, self.best = checkpoint_path(run_dir, "last"), checkpoint_path(run_dir, "best")

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None
