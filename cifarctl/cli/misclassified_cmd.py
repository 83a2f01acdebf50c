"""`cifarctl misclassified`: the test images a trained model gets most wrong."""

from __future__ import annotations

import json as _json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from cifarctl.cli import complete
from cifarctl.cli.app import RunTarget, app, console


class SortBy(str, Enum):
    confidence = "confidence"
    loss = "loss"


class Which(str, Enum):
    best = "best"
    last = "last"



PNG, GRADCAM_PNG = "misclassified.png", "misclassified_gradcam.png"  # the defaults of --out, in its help too

@app.command("misclassified", short_help="The wrongest test predictions, with Grad-CAM.")
def misclassified(
    target: RunTarget,
    n: Annotated[int, typer.Option("--n", min=1, max=500, help="How many images to show (at most 500: the grid is one PNG).")] = 25,
    sort: Annotated[SortBy, typer.Option("--sort", help="Wrongest first by predicted-class confidence or by loss.")] = SortBy.confidence,
    true: Annotated[Optional[str], typer.Option("--true", help="Only images of this true class.",
                                                autocompletion=complete.complete_class)] = None,
    pred: Annotated[Optional[str], typer.Option("--pred", help="Only images predicted as this class.",
                                                autocompletion=complete.complete_class)] = None,
    gradcam: Annotated[bool, typer.Option("--gradcam", help="Overlay Grad-CAM maps of the predicted class.")] = False,
    layer: Annotated[Optional[str], typer.Option("--layer", help="Grad-CAM layer (a name from `cifarctl summary`); default: the last conv with a spatial output.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help=f"PNG path (default: {PNG} in the run folder; "
                                                f"{GRADCAM_PNG} with --gradcam).")] = None,
    which: Annotated[Which, typer.Option("--which", help="Checkpoint of a run folder: best (its best test accuracy) or last (the latest saved).")] = Which.best,
    data: Annotated[Optional[str], typer.Option("--data", help="Data source (default: the one the run used).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.",
                                        autocompletion=complete.complete_device)] = "auto",
    json: Annotated[bool, typer.Option("--json", help="Print the picked images as JSON only.")] = False,
) -> None:
    """Show the wrongest test predictions as a captioned gallery (PNG + terminal).

    A run folder's best checkpoint by default (--which last: the latest); the PNG's title
    names the run, the checkpoint and its epoch, the test accuracy and the Grad-CAM layer.
    Captions: true label, predicted label, the model's confidence.
    --gradcam draws beside each image where the model looked (Grad-CAM).
    """
    from cifarctl.analysis.misclassified import find_misclassified, write_grid
    from cifarctl.errors import WriteError

    if layer is not None and not gradcam:
        gradcam = True  # --layer only makes sense with Grad-CAM
    result = find_misclassified(target, n=n, sort=sort.value, true=true, pred=pred, gradcam=gradcam,
                                layer=layer, which=which.value, data_source=data, device=device)
    given = out is not None
    if out is None:
        folder = result.run_dir or result.checkpoint.parent
        out = folder / (GRADCAM_PNG if gradcam else PNG)
    try:
        png = write_grid(result, out, user_path=given)
    except WriteError as exc:
        raise WriteError(f"{exc}; pass --out FILE to write it elsewhere" if not given else str(exc)) from None
    if json:
        print(_json.dumps(result.to_dict(), indent=2))
        return
    from cifarctl.ui.gallery import show_misclassified

    show_misclassified(console, result, png, true=true, pred=pred)
