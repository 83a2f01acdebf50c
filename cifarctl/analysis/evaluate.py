"""Evaluate a checkpoint: accuracy, loss, per-class accuracy, confusion matrix.

``evaluate_checkpoint(target)`` takes a run folder (its ``checkpoints/last.pt`` by
default) or a checkpoint file, rebuilds the model from the stored ``model_name`` /
``model_args``, loads the data the run used (the stored recipe's source, subsets and
seed, unless ``data`` is given) and evaluates with the same function, batch size and
precision as training, so a run's ``last.pt`` scores exactly the ``test_acc`` of the last
epoch in ``metrics.jsonl``. The result is also written to ``eval.json`` in the run folder
(or beside a loose checkpoint). Plain function, no printing.
"""

from __future__ import annotations

from pathlib import Path

from cifarctl.errors import UsageError

SPLITS = ("test", "train")


def confusion_matrix(y, pred, num_classes: int) -> list[list[int]]:
    """``m[true][predicted]`` counts."""
    import torch

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


def evaluate_checkpoint(
    target: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    tta: str | None = None,
    which: str = "last",
    device: str = "auto",
    write: bool = True,
    progress: bool = False,
) -> dict:
    """Evaluate ``target`` (a run folder or a checkpoint) and return the eval.json dict.

    ``tta=None`` uses the stored recipe's ``eval_tta``, as its per-epoch test accuracy did.
    """
    import torch

    from cifarctl.training.builders import precision_for, resolve_device
    from cifarctl.data import load_cifar, resolve_source
    from cifarctl.augment.device import make_normalizer
    from cifarctl.training.builders import build_model
    from cifarctl.training.evaluation import evaluate
    from cifarctl.recipe import TTA_MODES, validate_dict
    from cifarctl.runs import find_checkpoint, load_checkpoint, run_dir_of, write_json

    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    if tta is not None and tta not in TTA_MODES:
        raise UsageError(f"--tta {tta!r}: expected one of {', '.join(TTA_MODES)}")
    path = find_checkpoint(target, which)
    ckpt = load_checkpoint(path)
    recipe = validate_dict(ckpt["recipe"], f"{path} (stored recipe)")
    tta = recipe.eval_tta if tta is None else tta
    dev = resolve_device(device)
    model = build_model(validate_dict({**ckpt["recipe"], "model": ckpt["model_name"],
                                       "model_args": ckpt.get("model_args") or {}}, str(path)))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise UsageError(f"{path}: the weights do not fit model {ckpt['model_name']!r} "
                         f"({str(exc).splitlines()[0]})") from None
    model.to(dev)
    channels_last = dev.type == "cuda" and recipe.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    source = resolve_source(data or recipe.data.source or ckpt.get("data_source"))
    arrays = load_cifar(source, progress=progress, train_subset=recipe.data.train_subset,
                        test_subset=recipe.data.test_subset, seed=recipe.seed)
    classes = list(ckpt.get("classes") or arrays.classes)
    x_np, y_np = (arrays.test_x, arrays.test_y) if split == "test" else (arrays.train_x, arrays.train_y)
    x = torch.from_numpy(x_np.transpose(0, 3, 1, 2).copy()).to(dev)
    y = torch.from_numpy(y_np).long().to(dev)
    norm = make_normalizer(recipe.data.normalize, dev, recipe.data.augment)
    amp_dtype, _ = precision_for(recipe.precision, dev)

    def autocast():
        if amp_dtype is None:
            from contextlib import nullcontext

            return nullcontext()
        return torch.autocast(dev.type, dtype=amp_dtype)

    res = evaluate(model, x, y, normalize=norm.normalize_only, batch_size=recipe.data.test_batch_size,
                   loss_name=recipe.loss.name, autocast=autocast, channels_last=channels_last, tta=tta)
    matrix = confusion_matrix(y, res["preds"], len(classes))
    per_class = []
    for i, name in enumerate(classes):
        total = sum(matrix[i])
        per_class.append({"class": name, "correct": matrix[i][i], "total": total,
                          "accuracy": 100.0 * matrix[i][i] / total if total else None})
    run_dir = run_dir_of(path)
    out_path = (run_dir or path.parent) / "eval.json"
    result = {
        "checkpoint": str(path), "run_dir": str(run_dir) if run_dir else None,
        "recipe": recipe.name, "model": ckpt["model_name"], "epoch": ckpt.get("epoch"),
        "step": ckpt.get("step"), "mid_epoch": bool(ckpt.get("progress")),
        "split": split, "tta": tta, "data": source, "images": res["n"], "device": str(dev),
        "accuracy": res["acc"], "loss": res["loss"], "classes": classes,
        "per_class": per_class, "confusion": matrix,
        "most_confused": most_confused(matrix, classes),
        "eval_json": str(out_path) if write else None,
    }
    if write:
        write_json(out_path, result)
    return result
