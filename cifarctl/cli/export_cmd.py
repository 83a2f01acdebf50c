"""``cifarctl export``: the model as ONNX, TorchScript or a torch.export program, checked for parity."""

from __future__ import annotations

import json as _json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifarctl.cli.app import RunTarget, app, console


class Format(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    exported_program = "exported-program"


@app.command("export", short_help="The model as ONNX/TorchScript/torch.export, parity-checked, with a model card.")
def export(
    target: RunTarget,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="onnx (needs the export extra), torchscript or "
                                        "exported-program (torch.export).")] = Format.onnx,
    out: Annotated[Optional[Path], typer.Option("--out", metavar="FOLDER",
                                                help="Where to write (default: RUN_DIR/export/FORMAT).")] = None,
    images: Annotated[int, typer.Option("--images", min=1, help="Test images the parity check runs on.")] = 500,
    atol: Annotated[float, typer.Option("--atol", min=0.0, help="Largest |Δlogit| the check accepts.")] = 1e-4,
    which: Annotated[str, typer.Option("--which", help="Checkpoint of a run folder: best or last.")] = "best",
    data: Annotated[Optional[str], typer.Option("--data", metavar="PATH",
                                                help="Data source instead of the one the run used.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print export.json to stdout.")] = False,
) -> None:
    """Write the model for use outside cifarctl and check that the file computes what the run does.

    The written file is loaded back and run (ONNX with onnxruntime) on the run's test images
    against the PyTorch model: max |Δlogit| and top-1 agreement are printed and stored in
    export.json; a failed check exits 1 with the figures and writes nothing. Beside the file:
    MODEL_CARD.md (model, data and fingerprint, accuracy and the split that chose it, the input
    spec: size, RGB order, normalization constants, class names; intended use and limits) and
    recipe.yaml. Input of every format: float32 NCHW, normalized as MODEL_CARD.md says.
    """
    from cifarctl.analysis.export import export_run
    from cifarctl.errors import UsageError

    if which not in ("best", "last"):
        raise UsageError(f"--which {which!r}: expected best or last")
    from contextlib import nullcontext

    from cifarctl.cli.app import err_console

    busy = err_console.status(f"exporting as {fmt.value} and checking parity") if err_console.is_terminal \
        else nullcontext()
    with busy:
        result = export_run(target, fmt.value, out=out, which=which, images=images, atol=atol, data=data,
                            progress=True)
    if as_json:
        typer.echo(_json.dumps(result, indent=2))
        return
    from cifarctl.ui.render import print_line

    p = result["parity"]
    folder = Path(result["file"]).parent
    print_line(console, f"wrote {result['file']} ({result['format']}), MODEL_CARD.md, recipe.yaml, export.json "
               f"in {folder}")
    print_line(console, f"parity on {p['images']} test images ({p['checked_with']}): max |Δlogit| "
               f"{p['max_abs_logit_diff']:.3g} (tolerance {p['atol']:g}), top-1 agreement "
               f"{100 * p['top1_agreement']:.2f}%: ok")
