"""What ``cifarctl report`` shows of each run, gathered before anything is written.

One run's :class:`Evidence` comes from one reading of each of its folder's files: the
:class:`~cifarctl.analysis.compare.RunRecord` that :func:`~cifarctl.analysis.compare.read_run`
made (metrics.jsonl, summary.json, recipe.yaml), then env.json and the LR range test's
picture. Its recipe is validated once and passed on as a :class:`~cifarctl.recipe.schema.Recipe`;
its model is built once: summarised (:mod:`cifarctl.analysis.layers`), then given the
checkpoint's weights for the evaluation and the misclassified images
(:mod:`cifarctl.analysis.inference`), and read again by the rules' checks.

Plain functions, no printing but the ``say`` lines they are given; :mod:`cifarctl.ui.report`
renders what they return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from cifarctl import registry
from cifarctl.analysis.compare import RunRecord, collect_runs
from cifarctl.analysis.evaluate import evaluation
from cifarctl.analysis.inference import load_for_inference, predict_cached
from cifarctl.analysis.layers import ModelSummary, summarize_recipe
from cifarctl.analysis.misclassified import Misclassified, find_misclassified
from cifarctl.bundled import bundled_recipes
from cifarctl.data import data_summary, load_cifar, resolve_source
from cifarctl.errors import CifarctlError, UsageError
from cifarctl.fsutil import read_regular
from cifarctl.recipe.load import load_recipe, validate_dict
from cifarctl.recipe.schema import Recipe
from cifarctl.runs import read_json
from cifarctl.training.builders import build_model


@dataclass
class Evidence:
    """Everything one run's section shows, gathered before anything is written."""

    run: RunRecord
    recipe: Recipe                             # recipe.yaml, validated
    summary: dict[str, Any]                    # summary.json ({} when absent)
    env: dict[str, Any]                        # env.json ({} when absent)
    model: ModelSummary | None = None
    network: nn.Module | None = None           # the model, built once from the recipe (summarised, then evaluated)
    eval: dict[str, Any] | None = None
    missed: Misclassified | None = None
    data: Any = None                           # CifarArrays
    data_stats: dict[str, Any] | None = None
    data_problem: str | None = None
    grid_cols: int | None = None               # the assignment's misclassified grid, when it asks for one
    full_epochs: int | None = None             # the bundled recipe of the same name's epochs (None: no such recipe)
    lr_find_png: bytes | None = None           # the run's LR range test picture (lr_find.png)
    lr_find: dict[str, Any] = field(default_factory=dict)  # and its lr_find.json, read with it


def read_object(path: Path) -> dict[str, Any]:
    """A run folder's JSON object, or {} (missing, a symlink, a FIFO, too large, not an object)."""
    d = read_json(path)
    return d if isinstance(d, dict) else {}


def run_recipe(run: RunRecord) -> Recipe:
    """The run's recipe.yaml as :func:`~cifarctl.analysis.compare.read_run` read it, validated:
    the recipe, or the error :func:`~cifarctl.recipe.load.load_recipe` gives for that file."""
    if run.recipe_error is not None:
        raise run.recipe_error
    return validate_dict(run.recipe_doc, str(run.path / "recipe.yaml"))


def bundled_epochs(name: str) -> int | None:
    """The epochs of the bundled recipe called ``name`` (None: none, or one this version cannot read)."""
    path = bundled_recipes().get(name)
    try:
        return load_recipe(str(path)).epochs if path is not None else None
    except Exception:  # noqa: BLE001  a bundled recipe of another version: no comparison
        return None


def _reusing(model: nn.Module, recipe: Recipe) -> Callable[..., nn.Module]:
    """:func:`~cifarctl.registry.create_model`, but ``model`` (built from ``recipe``) when the
    checkpoint names the recipe's model and arguments: the model is not built twice."""
    def build(name: str, **args: Any) -> nn.Module:
        if name == recipe.model and args == dict(recipe.model_args):
            return model
        return registry.create_model(name, **args)
    return build


def gather(run: RunRecord, *, data: str | None, which: str, n: int | None, gradcam: bool, device: str,
           say: Callable[[str], None]) -> Evidence:
    """A run folder's evidence: the model summary, the data, the evaluation of its checkpoint,
    the misclassified images (``n``; None: the grid the assignment asks for,
    ``rules.misclassified_grid``, else 25). Data problems become ``data_problem``."""
    recipe = run_recipe(run)
    ev = Evidence(run=run, recipe=recipe, summary=run.summary, env=read_object(run.path / "env.json"),
                  full_epochs=bundled_epochs(recipe.name))
    ev.lr_find_png = read_regular(run.path / "lr_find.png")  # a symlink (to a secret, say) is not read
    if ev.lr_find_png is not None:
        ev.lr_find = read_object(run.path / "lr_find.json")
    say(f"{run.name}: model summary")
    ev.network = build_model(recipe)
    ev.model = summarize_recipe(recipe, model=ev.network)
    stored = ev.summary.get("data") if isinstance(ev.summary.get("data"), str) else None
    source = resolve_source(data or stored or recipe.data.source)
    try:
        say(f"{run.name}: loading {source}")
        ev.data = load_cifar(source, progress=False, train_subset=recipe.data.train_subset,
                             test_subset=recipe.data.test_subset, seed=recipe.seed,
                             image_size=recipe.data.image_size, label_kind=recipe.data.label_kind)
        ev.data_stats = data_summary(ev.data)
    except CifarctlError as exc:
        ev.data_problem = f"the data ({source}) could not be loaded: {exc}"
        return ev
    try:
        say(f"{run.name}: evaluating checkpoints/{which}.pt on {len(ev.data.test_y):,} test images")
        inf = load_for_inference(run.path, which=which, data=source, device=device, arrays=ev.data,
                                 build=_reusing(ev.network, recipe))
        # one pass for the evaluation and the mistakes, or the one an earlier eval/report kept
        res = predict_cached(inf, "test")
        if res["cached"]:
            say(f"{run.name}: read the predictions an earlier evaluation kept")
        ev.eval = evaluation(inf, res, "test")
        say(f"{run.name}: misclassified images" + (" and Grad-CAM" if gradcam else ""))
        grid = recipe.rules.misclassified_grid if recipe.rules is not None else None
        ev.grid_cols = grid[0] if n is None and grid else None
        count = n if n is not None else grid[0] * grid[1] if grid else 25
        ev.missed = find_misclassified(run.path, n=count, gradcam=gradcam, inference=inf, predictions=res)
    except CifarctlError as exc:
        ev.data_problem = f"the checkpoint could not be evaluated: {exc}"
    return ev


def read_runs(run_dirs: list[Path]) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """The run folders in ``run_dirs`` (read by :func:`~cifarctl.analysis.compare.collect_runs`)
    sorted by name, and those skipped with why; UsageError when there is none."""
    runs, skipped = collect_runs(run_dirs)
    runs = sorted(runs, key=lambda r: r.name)
    if not runs:
        why = "; ".join(f"{p}: {w}" for p, w in skipped[:5])
        raise UsageError(f"no run folders to report in {', '.join(map(str, run_dirs))}" + (f" ({why})" if why else ""))
    return runs, skipped


def gather_runs(runs: list[RunRecord], skipped: list[tuple[Path, str]], **options: Any) -> list[Evidence]:
    """:func:`gather` (``options``) of each run, in order; a run that cannot be reported (e.g. a
    recipe.yaml that does not validate) is added to ``skipped``, as compare does. UsageError
    when none can be."""
    evidence = []
    for r in runs:
        try:
            evidence.append(gather(r, **options))
        except CifarctlError as exc:
            skipped.append((r.path, str(exc)))
    if not evidence:
        raise UsageError("no run folder could be reported: " + "; ".join(f"{p}: {w}" for p, w in skipped[:3]))
    return evidence


def sweep_spec(evidence: list[Evidence]) -> dict[str, Any] | None:
    """The ``sweep.json`` of the one folder the runs are in (``<sweep>/runs/<run>``), or None."""
    folders = {ev.run.path.parent.parent for ev in evidence}
    if len(folders) != 1:
        return None
    return read_object(next(iter(folders)) / "sweep.json") or None
