"""Epoch-end files off the training loop: host snapshots and one background writer.

At an epoch end the loop used to block on a metrics fsync, one or two checkpoint saves
with file and folder fsyncs, a matplotlib figure and summary.json (docs/benchmarks.md gives
the figures). Now the loop only takes a :func:`host_copy` of the state (into persistent
buffers: pinned host memory for CUDA tensors, copied without blocking and fenced by an
event the writer waits on) and hands the writing to :class:`BackgroundWriter`, whose one
thread runs the jobs in order. Every guarantee of the files is the writer's as it was the
loop's: each checkpoint is written to a temp file, fsynced and renamed over the old one,
best.pt before last.pt, so a ``kill -9`` at any instant leaves loadable files from which a
resume continues bit for bit.

At most one job is in flight: :meth:`BackgroundWriter.submit` waits for the previous
one (and raises its error, e.g. a full disk) before the next snapshot may reuse the
buffers. :meth:`BackgroundWriter.drain` waits for the last one; the run layer drains
before it writes anything itself (a stop, an error, the end).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch


class Snapshot:
    """A host copy of a nested state (dicts, lists, tuples, tensors, plain values)."""

    def __init__(self, value: Any, event):
        self.value, self.event = value, event

    def ready(self) -> Any:
        """The state, once every copy from a device has arrived (call it in the writer)."""
        if self.event is not None:
            self.event.synchronize()
        return self.value


def host_copy(state: Any, buffers: dict) -> Snapshot:
    """Copy every tensor of ``state`` into ``buffers`` (kept by the caller between calls and
    reused while shapes and dtypes hold); device tensors go to pinned memory without
    blocking, so the loop does not wait for the device here."""
    devices: set[torch.device] = set()

    def copy(obj: Any, key: tuple) -> Any:
        if isinstance(obj, torch.Tensor):
            buf = buffers.get(key)
            if buf is None or buf.shape != obj.shape or buf.dtype != obj.dtype:
                buf = torch.empty(obj.shape, dtype=obj.dtype, device="cpu", pin_memory=obj.is_cuda)
                buffers[key] = buf
            if obj.is_cuda:
                devices.add(obj.device)
            return buf.copy_(obj.detach(), non_blocking=True)
        if isinstance(obj, dict):
            return {k: copy(v, (*key, k)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            items = [copy(v, (*key, i)) for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else tuple(items)
        return obj

    value = copy(state, ())
    event = None
    for dev in devices:  # the copies were queued on each device's current stream
        with torch.cuda.device(dev):
            event = torch.cuda.Event()
            event.record()
            if len(devices) > 1:
                event.synchronize()
    return Snapshot(value, event)


class BackgroundWriter:
    """One thread that runs file-writing jobs in order, at most one in flight."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cifarctl-writer")
        self.pending: Future | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` in the background, after the previous one (whose error is raised here)."""
        self.drain()
        self.pending = self.pool.submit(job)

    def drain(self) -> None:
        """Wait for the job in flight; raise its error."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the job in flight without raising (on the way out after another error)."""
        try:
            self.drain()
        except Exception:
            pass
        self.pool.shutdown(wait=True)
