"""``cifarctl predict``: classify image files with a trained run."""

from __future__ import annotations

import json as _json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import FormatOption, OutputFormat, RunTarget, app, console, err_console, output_format


@app.command("predict", short_help="Classify your own images with a trained run.")
def predict(
    target: RunTarget,
    images: Annotated[list[str], typer.Argument(
        metavar="IMAGE|DIR...", help="Image files (any format Pillow reads) or folders of them.",
        show_default=False)],
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="How many classes to show per image.")] = 3,
    tta: Annotated[Optional[str], typer.Option(
        "--tta", metavar="none|flip|flip_translate",
        help="none, flip or flip_translate, as in eval; default: the recipe's eval_tta.",
        show_default=False)] = None,
    gradcam: Annotated[Optional[Path], typer.Option(
        "--gradcam", metavar="OUT.png", help="Write each image with the Grad-CAM overlay of its top class "
        "into this PNG (the first 100 images).")] = None,
    layer: Annotated[Optional[str], typer.Option("--layer", help="Grad-CAM layer; default: the last conv with a "
                                                 "spatial output.")] = None,
    which: Annotated[str, typer.Option("--which", help="Checkpoint of a run folder: best or last.")] = "best",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (same as --format json).")] = False,
    fmt: FormatOption = OutputFormat.table,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.",
                                        autocompletion=complete.complete_device)] = "auto",
) -> None:
    """Classify images with a trained run: the top classes and their probabilities.

    Each image is made RGB (alpha over white), its shorter side resized to the run's
    data.image_size (bicubic) and the centre square cut out; then it is normalized and
    predicted exactly as `cifarctl eval` predicts the test split (--tta as there). A
    folder is predicted in batches. A file that is not a readable image is one line on
    stderr and the others are still predicted; the exit code is then 2.
    """
    from cifarctl.analysis.inference import check_options, load_for_inference
    from cifarctl.analysis.predict import predict_files, write_gradcam
    from cifarctl.errors import UsageError
    from cifarctl.ui.predict_view import image_progress, show_predictions

    check_options("test", tta)
    if which not in ("best", "last"):
        raise UsageError(f"--which {which!r}: expected best or last")
    fmt = output_format(fmt, as_json)
    if gradcam is not None:
        from cifarctl.fsutil import check_target

        check_target(gradcam)  # a FIFO or device is refused before anything is predicted
    inf = load_for_inference(target, which=which, device=device, with_data=False)
    with image_progress(err_console) as progress:
        result = predict_files(inf, images, top_k=top, tta=tta, gradcam=gradcam is not None or layer is not None,
                               gradcam_layer=layer, progress=progress)
    out = result.to_dict()
    run = inf.run_dir.name if inf.run_dir is not None else inf.path.name
    if gradcam is not None and result.items:
        out["gradcam_png"] = str(write_gradcam(result, gradcam, run))
    if fmt == "json":
        typer.echo(_json.dumps(out, indent=2))
    else:
        show_predictions(console, err_console, out, run, fmt)
    if result.errors:
        raise typer.Exit(2)
