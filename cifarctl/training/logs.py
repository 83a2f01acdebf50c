"""Training logs in the ecosystem's formats, beside metrics.jsonl: ``metrics.csv`` (the same
columns, rewritten from the history at each epoch end, so a resume that drops epochs drops
them here too) and TensorBoard event files (``tensorboard/``: per-epoch metrics, loss and
lr at display points, and the resolved recipe as hparams with the final metrics) when the
``tensorboard`` package is installed and the recipe does not say ``tensorboard: false``.
TensorBoard's writer queues events for its own thread, so nothing here blocks the loop.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from cifarctl.errors import UsageError
from cifarctl.recipe.load import flatten

EPOCH_SCALARS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "seconds",
                 "images_per_s")


def metrics_csv(history: list[dict]) -> str:
    """metrics.jsonl's rows as CSV (columns in metrics.jsonl's order, the union over rows)."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    return buf.getvalue()


class TensorBoardLog:
    """The run's TensorBoard events, or nothing when the package is missing or turned off."""

    def __init__(self, run_dir: Path, recipe, enabled: bool = True):
        self.writer = None
        if not (enabled and recipe.tensorboard):  # enabled: rank 0 only
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the optional extra is not installed
            return
        self.recipe = recipe
        folder = Path(run_dir) / "tensorboard"
        if os.path.lexists(folder) and (folder.is_symlink() or not folder.is_dir()):

            kind = "a symbolic link" if folder.is_symlink() else "not a folder"
            raise UsageError(f"{folder} is {kind}: TensorBoard's events go only into the run's own "
                             "tensorboard/ folder; move it aside, or set tensorboard: false")
        self.writer = SummaryWriter(log_dir=str(folder))

    @property
    def on(self) -> bool:
        return self.writer is not None

    def step(self, ev: dict, global_step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar("step/loss", ev["loss"], global_step)
            self.writer.add_scalar("step/acc", ev["acc"], global_step)
            self.writer.add_scalar("step/lr", ev["lr"], global_step)

    def epoch(self, ev: dict) -> None:
        if self.writer is not None:
            for k in EPOCH_SCALARS:
                if isinstance(ev.get(k), (int, float)):
                    self.writer.add_scalar(f"epoch/{k}", ev[k], ev["epoch"])

    def close(self, summary: dict | None = None) -> None:
        """hparams (the resolved recipe, flattened) with the final metrics, then flush."""
        if self.writer is None:
            return
        if summary is not None:
            hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                       for k, v in flatten(self.recipe.to_dict()).items() if v is not None}
            metrics = {f"hparam/{k}": summary[k] for k in ("best_test_acc", "final_test_acc")
                       if isinstance(summary.get(k), (int, float))}
            self.writer.add_hparams(hparams, metrics, run_name=".")
        self.writer.close()
        self.writer = None
