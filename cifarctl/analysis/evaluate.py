"""Evaluate a checkpoint: accuracy, loss, per-class accuracy, confusion matrix.

``evaluate_checkpoint(target)`` takes a run folder (its ``checkpoints/best.pt`` by
default, as ``misclassified``; ``which="last"`` for ``last.pt``) or a checkpoint file, loads
it with :func:`cifarctl.analysis.inference.load_for_inference` (the model from the stored
``model_name`` / ``model_args``, the data the run used) and predicts with
:func:`~cifarctl.analysis.inference.predict`, the function, batch size and precision of
training, so a checkpoint scores exactly the ``test_acc`` that ``metrics.jsonl`` logged for
its epoch (``best.pt``: the best epoch; ``last.pt``: the last, unless a stop saved it
mid-epoch). The result is also written to ``eval.json`` in the run folder (or beside a
loose checkpoint), and the per-image predictions to ``eval-predictions-<split>.npz``
(:func:`~cifarctl.analysis.inference.predict_cached`): the next ``eval``, ``misclassified`` or
``report`` of the same checkpoint on the same data reads them instead of predicting again.
Plain function, no printing.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import torch

from cifarctl import fsutil
from cifarctl.analysis.inference import SPLITS, check_options, load_for_inference, predict_cached
from cifarctl.errors import WriteError
from cifarctl.runs import write_json

__all__ = ["SPLITS", "confusion_matrix", "evaluate_checkpoint", "most_confused"]


def confusion_matrix(y, pred, num_classes: int) -> list[list[int]]:
    """``m[true][predicted]`` counts."""
    m = torch.bincount(y.long().cpu() * num_classes + pred.long().cpu(), minlength=num_classes ** 2)
    return m.view(num_classes, num_classes).tolist()


def most_confused(matrix: list[list[int]], classes: list[str], top: int = 5) -> list[dict]:
    """The largest off-diagonal cells: true class, predicted class, count, share of the class."""
    cells = []
    for i, row in enumerate(matrix):
        total = sum(row)
        for j, count in enumerate(row):
            if i != j and count > 0:
                cells.append({"true": classes[i], "predicted": classes[j], "count": count,
                              "percent_of_true": 100.0 * count / total if total else 0.0})
    cells.sort(key=lambda c: (-c["count"], c["true"], c["predicted"]))
    return cells[:top]


def confusion_csv(matrix: list[list[int]], classes: list[str]) -> str:
    """The matrix as CSV: a header of predicted classes, one row per true class."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, matrix):
        w.writerow([name, *row])
    return buf.getvalue()


def evaluate_checkpoint(
    target: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    tta: str | None = None,
    which: str = "best",
    device: str = "auto",
    write: bool = True,
    progress: bool = False,
) -> dict:
    """Evaluate ``target`` (a run folder or a checkpoint) and return the eval.json dict.

    ``tta=None`` uses the stored recipe's ``eval_tta``, as its per-epoch test accuracy did.
    """
    check_options(split, tta)  # before anything is loaded
    inf = load_for_inference(target, which=which, data=data, device=device, progress=progress)
    res = predict_cached(inf, split, tta=tta, keep=write)
    out_path = (inf.run_dir or inf.path.parent) / "eval.json"
    result = evaluation(inf, res, split, str(out_path) if write else None)
    if write and len(inf.classes) > 20:  # too many classes for a terminal matrix: the whole of it as CSV

        csv_path = out_path.with_name("confusion.csv")
        try:
            fsutil.write_atomic(csv_path, confusion_csv(result["confusion"], inf.classes))
            result["confusion_csv"] = str(csv_path)
        except WriteError:
            result["confusion_csv"] = None
    if write:  # atomic: a reader (compare, a second eval) never sees half of it, even while the run trains

        try:
            write_json(out_path, result, after=f"; the evaluation ({res['acc']:.2f}% on {res['n']} {split} "
                       "images) was not saved")
        except WriteError as exc:  # a read-only run folder: the numbers are still the answer
            result["eval_json"] = None
            result["warning"] = str(exc)
    return result


def evaluation(inf, res: dict, split: str, eval_json: str | None = None) -> dict:
    """The eval.json dict of ``res`` (:func:`~cifarctl.analysis.inference.predict` of ``inf``
    on ``split``): accuracy, loss, per-class accuracy, confusion matrix, most confused."""
    classes = inf.classes
    matrix = confusion_matrix(res["y"], res["preds"], len(classes))
    per_class = []
    for i, name in enumerate(classes):
        total = sum(matrix[i])
        per_class.append({"class": name, "correct": matrix[i][i], "total": total,
                          "accuracy": 100.0 * matrix[i][i] / total if total else None})
    ckpt = inf.checkpoint
    return {
        "checkpoint": str(inf.path), "run_dir": str(inf.run_dir) if inf.run_dir else None,
        "recipe": inf.recipe.name, "model": inf.model_name, "epoch": ckpt.get("epoch"),
        "step": ckpt.get("step"), "mid_epoch": bool(ckpt.get("progress")),
        "split": split, "tta": res["tta"], "data": inf.source, "images": res["n"], "device": str(inf.device),
        # strict JSON: a diverged model's NaN/inf loss is null, never NaN in eval.json
        "accuracy": res["acc"], "loss": res["loss"] if math.isfinite(res["loss"]) else None, "classes": classes,
        "per_class": per_class, "confusion": matrix,
        "most_confused": most_confused(matrix, classes, 5 if len(classes) <= 20 else 15),
        "eval_json": eval_json, "cached": bool(res.get("cached")),
    }
