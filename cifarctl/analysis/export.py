"""Export a run's model for use outside cifarctl, and check that the file computes what the run does.

``export_run(target, fmt)`` loads a checkpoint (:func:`~cifarctl.analysis.inference.load_for_inference`,
on the CPU, float32), writes it in one of :data:`FORMATS`:

- ``onnx``: ``torch.onnx.export(..., dynamo=True)`` (needs ``onnxscript``), batch dimension dynamic;
- ``torchscript``: ``torch.jit.trace`` (deprecated by torch in favour of ``torch.export``, still
  the format most C++/mobile runtimes load), saved with ``torch.jit.save``;
- ``exported-program``: ``torch.export.export`` with a dynamic batch, saved with ``torch.export.save``;

then loads the written file back and runs it (ONNX through ``onnxruntime``) on the run's
own test images, in batches of another size than the one traced, against the PyTorch
model: the largest absolute logit difference and the share of images whose top class
agrees. The check passes when the difference is at most ``atol`` and every image whose
top class differs is a near tie (its reference top-2 margin at most twice the difference).

The input of every format is what the model takes: float32 NCHW (N, 3, S, S), RGB,
normalized with the run's mean and std (``MODEL_CARD.md`` says which). Beside the file go
``MODEL_CARD.md``, the run's ``recipe.yaml`` and ``export.json`` (the parity figures), all
written only when the check passed: a failed check leaves nothing behind.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cifarctl import __version__
from cifarctl.analysis.inference import load_for_inference
from cifarctl.augment.device import make_normalizer
from cifarctl.errors import CifarctlError, UsageError
from cifarctl.fsutil import check_target, fsync_dir, write_atomic, write_error
from cifarctl.runs import read_json, read_run_info
from cifarctl.safetext import md_code, md_text

FORMATS = ("onnx", "torchscript", "exported-program")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "exported-program": "model.pt2"}
EXTRA_HINT = 'pip install "cifarctl[export]" (onnx, onnxscript, onnxruntime)'
CHECK_BATCH = 50  # parity batches: not the traced batch of 2, so the dynamic batch is exercised


class ParityError(CifarctlError):
    """The exported file's outputs differ from the model's (exit 1)."""

    exit_code = 1


@dataclass
class Parity:
    images: int
    max_abs_logit_diff: float
    top1_agreement: float      # share of images, 0..1
    disagreements: int
    atol: float
    passed: bool
    checked_with: str          # onnxruntime 1.x / torch.jit.load / torch.export.load


def _needs(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--format onnx needs {', '.join(missing)}: {EXTRA_HINT}")


def _write_onnx(model, example) -> bytes:
    _needs("onnx", "onnxscript", "onnxruntime")
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["input"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), external_data=False, verbose=False)
    return program.model_proto.SerializeToString()  # weights inside: these nets are far below 2 GB


def _write_torchscript(model, example) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit.trace is deprecated by torch; the format is the ask
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buf)
    return buf.getvalue()


def _write_program(model, example) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def _runner(fmt: str, path: Path):
    """``(f(x: float32 NCHW numpy) -> logits numpy, what ran it)`` for the written file."""
    if fmt == "onnx":
        import onnxruntime as ort

        ort_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = ort_session.get_inputs()[0].name
        return (lambda x: ort_session.run(None, {name: x})[0]), f"onnxruntime {ort.__version__} (CPU)"
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            loaded = torch.jit.load(str(path), map_location="cpu")
        what = "torch.jit.load"
    else:
        loaded = torch.export.load(str(path)).module()
        what = "torch.export.load"

    def run(x):
        with torch.no_grad():
            return loaded(torch.from_numpy(x)).numpy()

    return run, what


def parity(model, run, x: np.ndarray, atol: float, what: str) -> Parity:
    """Compare ``run`` (the exported file) with ``model`` on the normalized images ``x``."""
    diffs, agree, ties_only = [], 0, True
    for s in range(0, len(x), CHECK_BATCH):
        xb = x[s:s + CHECK_BATCH]
        with torch.no_grad():
            ref = model(torch.from_numpy(xb)).float().numpy()
        got = np.asarray(run(xb), dtype=np.float32)
        if got.shape != ref.shape:
            raise ParityError(f"the exported model gives outputs of shape {got.shape} for {ref.shape}")
        d = np.abs(got - ref)
        diffs.append(float(d.max()) if d.size else 0.0)
        same = got.argmax(1) == ref.argmax(1)
        agree += int(same.sum())
        if not same.all():
            top2 = np.sort(ref[~same], axis=1)[:, -2:]
            ties_only &= bool(((top2[:, 1] - top2[:, 0]) <= 2 * d[~same].max(axis=1)).all())
    worst = max(diffs) if diffs else 0.0
    n = len(x)
    ok = bool(np.isfinite(worst)) and worst <= atol and (agree == n or ties_only)
    return Parity(n, worst, agree / max(n, 1), n - agree, atol, ok, what)


def export_run(target: str | os.PathLike, fmt: str, *, out: str | os.PathLike | None = None, which: str = "best",
               images: int = 500, atol: float = 1e-4, data: str | None = None, progress: bool = False) -> dict:
    """Export ``target``'s checkpoint as ``fmt`` into ``out`` (default: ``RUN_DIR/export/<fmt>``) and
    check it on up to ``images`` test images; a dict of what was written and the figures.
    Raises :class:`ParityError` (nothing written) when the check fails."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if images < 1:
        raise UsageError(f"--images {images}: check on at least 1 test image")
    if fmt == "onnx":
        _needs("onnx", "onnxscript", "onnxruntime")
    inf = load_for_inference(target, which=which, data=data, device="cpu", progress=progress)
    model = inf.model.float().to(memory_format=torch.contiguous_format).eval()
    folder = Path(out) if out is not None else (inf.run_dir or inf.path.parent) / "export" / fmt
    x_u8, _ = inf.split("test")
    x_u8 = x_u8[:images]
    if not len(x_u8):
        raise UsageError(f"{inf.source}: no test images to check the export on")
    x = inf.normalize(x_u8).contiguous().numpy()
    size = inf.image_size
    example = torch.from_numpy(x[:2]) if len(x) >= 2 else torch.from_numpy(np.concatenate([x, x]))
    made = not folder.exists()
    parent = _existing_parent(folder)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=parent))
    except OSError as exc:

        raise write_error(folder, exc, "; pass --out FOLDER", user_path=True) from None
    done = False
    try:
        path = tmp / FILE_NAMES[fmt]
        try:
            blob = {"onnx": _write_onnx, "torchscript": _write_torchscript, "exported-program": _write_program}[fmt](
                model, example)
        except CifarctlError:
            raise
        except Exception as exc:  # noqa: BLE001  a model a tracer cannot take: one line, which model and why
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CifarctlError(f"{inf.path}: exporting model {inf.model_name!r} as {fmt} failed ({first})") from None
        write_atomic(path, blob)
        run, what = _runner(fmt, path)
        check = parity(model, run, x, atol, what)
        result = {"format": fmt, "file": str(folder / FILE_NAMES[fmt]), "checkpoint": str(inf.path),
                  "run_dir": str(inf.run_dir) if inf.run_dir else None, "model": inf.model_name,
                  "data": inf.source, "parity": asdict(check),
                  "input": {"shape": ["N", 3, size, size], "dtype": "float32", "channels": "RGB",
                            "layout": "NCHW", **normalization(inf)},
                  "classes": list(inf.classes)}
        if not check.passed:
            raise ParityError(f"{fmt} export of {inf.path} fails its parity check on {check.images} test images: "
                              f"max |Δlogit| {check.max_abs_logit_diff:.3g} (tolerance {atol:g}), top-1 agreement "
                              f"{100 * check.top1_agreement:.2f}%; nothing written")
        write_atomic(tmp / "recipe.yaml", inf.recipe.to_yaml())
        write_atomic(tmp / "MODEL_CARD.md", model_card(inf, result))
        write_atomic(tmp / "export.json", json.dumps(result, indent=2) + "\n")
        _move_in(tmp, folder, [FILE_NAMES[fmt], "recipe.yaml", "MODEL_CARD.md", "export.json"])
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made and not done:  # a failed export leaves no folder behind either
            try:
                folder.rmdir()
            except OSError:
                pass
    return result


def _existing_parent(folder: Path) -> Path:
    """``folder``, made (with its parents), for the temp folder to sit in: the move in is then a rename."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(folder, exc, "; pass --out FOLDER", user_path=True) from None
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: pass --out FOLDER")
    return folder


def _move_in(tmp: Path, folder: Path, names: list[str]) -> None:
    """Each file of ``tmp`` into ``folder`` atomically, the model file first."""
    for name in names:
        check_target(folder / name)
        try:
            os.replace(tmp / name, folder / name)
        except OSError as exc:
            raise write_error(folder / name, exc) from None
    fsync_dir(folder)


def normalization(inf) -> dict:
    """The run's normalization constants (an explicit ``Normalize`` step wins, as in training)."""
    n = make_normalizer(inf.recipe.data.normalize, "cpu", inf.recipe.data.augment)
    return {"mean": list(n.mean), "std": list(n.std), "pixel_scale": n.max_pixel_value}


def model_card(inf, result: dict) -> str:
    """MODEL_CARD.md: model, params, recipe, data and fingerprint, accuracy and the split
    that chose it, the input spec and class names, intended use and limits."""
    run_dir = inf.run_dir
    summary = (read_json(run_dir / "summary.json") if run_dir else None) or {}
    info = read_run_info(run_dir) if run_dir else {}
    params = sum(p.numel() for p in inf.model.parameters())
    p, spec = result["parity"], result["input"]
    size = spec["shape"][2]
    chosen = summary.get("selected_on") or "test"
    best = summary.get("best_test_acc")
    val = summary.get("best_val_acc")
    acc_lines = []
    if chosen == "val" and val is not None:
        acc_lines.append(f"- validation accuracy {val:.2f} % (epoch {summary.get('best_epoch')}): the checkpoint "
                         "was chosen on the **validation** split (train images held out)")
        if best is not None:
            acc_lines.append(f"- test accuracy of that epoch {best:.2f} % (the test split chose nothing)")
    elif best is not None:
        acc_lines.append(f"- best test accuracy {best:.2f} % (epoch {summary.get('best_epoch')}): the checkpoint "
                         "was chosen on the **test** split, so the figure is somewhat optimistic")
    if inf.path.name != "best.pt" and acc_lines:
        acc_lines.append(f"- this file is {md_code(inf.path.name)}, not the chosen checkpoint")
    ckpt = inf.checkpoint
    lines = [
        f"# Model card: {md_text(inf.model_name)} ({md_text(result['format'])})", "",
        f"Exported by cifarctl {__version__} from {md_code(inf.path)} (epoch {ckpt.get('epoch')}).", "",
        "## Model", "",
        f"- architecture {md_code(inf.model_name)}, model_args {md_code(json.dumps(ckpt.get('model_args') or {}))}",
        f"- {params:,} parameters",
        f"- recipe {md_code(inf.recipe.name)} (beside this file as `recipe.yaml`), seed {inf.recipe.seed}",
        f"- file {md_code(Path(result['file']).name)}: {md_text(result['format'])}, batch dimension dynamic", "",
        "## Data", "",
        f"- {md_text(inf.source)}",
        f"- fingerprint {md_code(info.get('data_key') or ckpt.get('data_key') or 'not recorded')}",
        f"- {len(inf.classes)} classes", "",
        "## Accuracy", "",
        *(acc_lines or ["- not recorded (no summary.json beside the checkpoint)"]), "",
        "## Input", "",
        f"- float32, NCHW, shape (N, 3, {size}, {size}), channels in **RGB** order",
        f"- pixel values v in 0..255 become (v / {spec['pixel_scale']:g} - mean) / std per channel, with",
        f"  mean {md_code(spec['mean'])} and std {md_code(spec['std'])}",
        f"- an image of another size: shorter side resized to {size} px (bicubic), then the centre "
        f"{size}x{size} crop, as `cifarctl predict` does",
        "- output: one logit per class (softmax for probabilities), in this order:", "",
        "| index | class |", "|--:|:--|",
        *(f"| {i} | {md_text(c)} |" for i, c in enumerate(inf.classes)), "",
        "## Parity check", "",
        f"On {p['images']} of the run's test images, the exported file run by {md_text(p['checked_with'])} against "
        f"the PyTorch model: max |Δlogit| {p['max_abs_logit_diff']:.3g} (tolerance {p['atol']:g}), top-1 "
        f"agreement {100 * p['top1_agreement']:.2f} % ({p['disagreements']} differ).", "",
        "## Intended use and limits", "",
        f"- Made for learning and experiments: classifying {size}x{size} images of the classes above, "
        "drawn from the same kind of data it was trained on.",
        "- Not for decisions about people or anything safety-relevant. It has seen only its training "
        "data: an image of none of its classes still gets one of them, often with high probability.",
        "- Accuracy on other photos (other cameras, framing, sizes) is unmeasured and usually lower "
        "than the figure above.",
        "",
    ]
    return "\n".join(lines)
