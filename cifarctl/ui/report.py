"""``cifarctl report``: an assignment write-up (README.md and its pictures) from run folders.

This module only arranges: the numbers come from the library (``compare``'s reading and
grouping, ``summary``'s layer table, ``eval``'s and ``misclassified``'s inference path, the
findings of :mod:`cifarctl.analysis.findings`), the tables from the one renderer
(:mod:`cifarctl.tabular`). The same runs give the same README.md byte for byte but for
its "generated" line, so a student can re-run it after training more.

Size (~510 lines): one function per section of one document, over one :class:`Evidence`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cifarctl.safetext import md_block, md_code, md_target, md_text
from cifarctl.tabular import Column, Tabular, markdown

SAMPLES_PER_CLASS = 4
SECTION_NEEDS_DATA = "needs the test data, which could not be loaded"


@dataclass
class Report:
    """What :func:`write_report` wrote and what it could not."""

    path: Path                      # README.md
    runs: list[Any]                 # RunRecords reported
    skipped: list[tuple[Path, str]]
    warnings: list[str] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)  # run name -> PASS/FAIL/-
    accuracy: dict[str, float | None] = field(default_factory=dict)  # run name -> evaluated accuracy
    seconds: float = 0.0


def default_out_dir(runs, now: float | None = None) -> Path:
    """``reports/<recipe or recipes>-<time>``."""
    import re

    # names come from run folders (summary.json): one plain folder name, never a path
    names = sorted({re.sub(r"[^A-Za-z0-9._-]+", "_", str(r.recipe)).lstrip(".") or "run" for r in runs}) or ["runs"]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path("reports") / f"{'+'.join(names)[:80]}-{stamp}"


MARKER = ".cifarctl-report"  # in every report folder: what cifarctl may write over


def check_out_dir(out_dir: Path) -> None:
    """A report goes into a new folder, or one a report wrote before (it has the marker):
    never over an unrelated README.md or images (``report -o .`` in a repository root)."""
    from cifarctl.errors import UsageError

    if not out_dir.exists() or (out_dir / MARKER).is_file():
        return
    for name in ("README.md", "images"):
        if os.path.lexists(out_dir / name):
            raise UsageError(f"--out {out_dir}: it holds {out_dir / name}, which a report would replace, and no "
                             f"earlier report wrote it (no {MARKER}); give a new folder")


# ------------------------------------------------------------------------ small pieces
def _data_label(source: str | None) -> str:
    if not source:
        return "-"
    name = Path(str(source)).name
    return f"{source} (JPEG copy)" if "jpeg" in name.lower() else str(source)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    s = round(s)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def _setting(k: str, v: Any) -> str:
    """One setting as a person writes it: ``nesterov``, not ``nesterov False``."""
    if isinstance(v, bool):
        return k.replace("_", " ") if v else f"no {k.replace('_', ' ')}"
    return f"{k} {v}"


def _settings(d: dict[str, Any]) -> str:
    parts = [_setting(k, v) for k, v in d.items() if k != "name" and v is not None and not isinstance(v, (dict, list))]
    return f"{d.get('name', '?')} ({', '.join(parts)})" if parts else str(d.get("name", "?"))


def _read_json(path: Path) -> dict[str, Any]:
    """A run folder's JSON object, or {} (missing, a symlink, a FIFO, too large, not an object)."""
    from cifarctl.runs import read_json

    d = read_json(path)
    return d if isinstance(d, dict) else {}


def command_of(env: dict[str, Any], recipe, seed, data: str | None = None) -> str:
    """The command that started the run (``env.json``), as ``cifarctl train ...``, with
    ``--data DATA`` added when the run did not use the official download and the command
    does not say which data (it came from ``$CIFARCTL_DATA`` or the recipe)."""
    argv = [str(a) for a in env.get("command") or []]
    if argv and "train" in argv:
        args = argv[argv.index("train"):]
    else:
        args = ["train", recipe.name] + (["--seed", str(seed)] if seed is not None else [])
    if isinstance(data, str) and data and data != "cifar10" and "--data" not in args and not any(a.startswith("--data=") for a in args):
        args += ["--data", data]
    return "cifarctl " + " ".join(_quote(a) for a in args)


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(str(a))


# ------------------------------------------------------------------------ one run's evidence
@dataclass
class Evidence:
    """Everything one run's section shows, gathered before anything is written."""

    run: Any                                   # RunRecord
    recipe: Any                                # Recipe
    summary: dict[str, Any]
    env: dict[str, Any]
    model: Any = None                          # ModelSummary
    eval: dict[str, Any] | None = None
    missed: Any = None                         # Misclassified
    data: Any = None                           # CifarArrays
    data_stats: dict[str, Any] | None = None
    data_problem: str | None = None
    grid_cols: int | None = None               # the assignment's misclassified grid, when it asks for one


def gather(run, *, data: str | None, which: str, n: int | None, gradcam: bool, device: str,
           say: Callable[[str], None]) -> Evidence:
    """Read a run folder and evaluate its checkpoint: the model summary, the data, the
    evaluation, the misclassified images (``n``; None: the grid the assignment asks for,
    ``rules.misclassified_grid``, else 25). Data problems become ``data_problem``."""
    from cifarctl.analysis.layers import summarize_recipe
    from cifarctl.data import data_summary, load_cifar, resolve_source
    from cifarctl.errors import CifarctlError
    from cifarctl.recipe.load import load_recipe

    recipe = load_recipe(str(run.path / "recipe.yaml"))
    summary = _read_json(run.path / "summary.json")
    ev = Evidence(run=run, recipe=recipe, summary=summary, env=_read_json(run.path / "env.json"))
    say(f"{run.name}: model summary")
    ev.model = summarize_recipe(recipe)
    stored = summary.get("data") if isinstance(summary.get("data"), str) else None
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
        from cifarctl.analysis.evaluate import evaluation
        from cifarctl.analysis.inference import load_for_inference, predict_cached
        from cifarctl.analysis.misclassified import find_misclassified

        say(f"{run.name}: evaluating checkpoints/{which}.pt on {len(ev.data.test_y):,} test images")
        inf = load_for_inference(run.path, which=which, data=source, device=device, arrays=ev.data)
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


# ------------------------------------------------------------------------ one run's section
def _target_table(ev: Evidence) -> Tabular:
    tab = Tabular(None, [Column("target"), Column("required", "right"), Column("measured", "right"),
                         Column("result")])
    names = {"min_test_acc": ("best test accuracy (seed's figure)", "≥ {:.2f} %", "{:.2f} %"),
             "assignment_acc": ("best test accuracy (assignment's threshold)", "≥ {:.2f} %", "{:.2f} %"),
             "max_params": ("parameters", "≤ {:,}", "{:,}"), "max_epochs": ("epochs", "≤ {}", "{}")}
    from cifarctl.recipe.targets import assignment_threshold, target_verdict

    # judged anew from the validated recipe and the run's own numbers, not read from summary.json
    verdict = target_verdict(ev.recipe.target, best_acc=ev.run.best_acc, params=ev.run.params,
                             epochs=ev.recipe.epochs, assignment=assignment_threshold(ev.recipe))
    for check in verdict.get("checks", []):
        label, req, got = names.get(check.get("name"), (check.get("name"), "{}", "{}"))
        tab.add_row(label, req.format(check["target"]), "-" if check["value"] is None else got.format(check["value"]),
                    "PASS" if check.get("passed") else "FAIL")
    return tab


def _reference_part(ev: Evidence) -> list[str]:
    """This run beside the seed's figure, the assignment's threshold and the best public
    submission (from the validated recipe), as ``train``'s last line shows them."""
    from cifarctl.recipe.targets import reference

    ref = reference(ev.recipe)
    if ev.recipe.rules is None or all(ref[k] is None for k in ("seed", "assignment", "best_public")):
        return []
    tab = Tabular(None, [Column("this run", "right"), Column("seed's figure", "right"),
                         Column("assignment threshold", "right"), Column("best public", "right")])
    tab.add_row(*("-" if v is None else f"{v:.2f} %"
                  for v in (ev.run.best_acc, ref["seed"], ref["assignment"], ref["best_public"])))
    return [markdown(tab, heading=None)]  # the source is under the Rules table


def _rules_part(ev: Evidence, sub: str) -> list[str]:
    """The assignment's rules, measured on the model and recipe, the threshold on this run."""
    if ev.recipe.rules is None:
        return []
    from cifarctl.analysis.rules import check_rules
    from cifarctl.ui.tables import rules_table

    rows = check_rules(ev.recipe, best_acc=ev.run.best_acc, summary=ev.model)  # the Model section's pass
    broken = ev.summary.get("rules_broken")
    note = ([f"_Trained with --break-rules: {md_text('; '.join(map(str, broken)))}._"]
            if isinstance(broken, list) and broken else [])
    return [f"{sub} Rules", markdown(rules_table(ev.recipe, rows), heading=None), *note]


def _result_table(ev: Evidence) -> Tabular:
    r, s = ev.run, ev.summary
    tab = Tabular(None, [Column("measure"), Column("value")])
    rows = [
        ("status", r.status + ("" if r.status == "completed" else f" (report of {r.epochs} epochs done)")),
        ("best test accuracy", "-" if r.best_acc is None else f"{r.best_acc:.2f} % (epoch {r.best_epoch})"),
        ("best epoch chosen on", "the validation split (data.val_split)" if r.selected_on == "val"
         else "the test split (no validation split)"),
        ("final test accuracy", "-" if r.final_acc is None else f"{r.final_acc:.2f} %"),
        *([("weights", "the exponential moving average of the trained weights (recipe ema)")]
          if r.weights == "ema" else []),
        *([("stopped early", r.stopped_early)] if r.stopped_early else []),
        ("epochs", f"{r.epochs} of {r.epochs_planned}" if r.epochs_planned else str(r.epochs)),
        ("wall time", _dur(r.total_seconds)),
        ("throughput", "-" if r.images_per_s is None else f"{r.images_per_s:,.0f} images/s"),
        ("device", str(s.get("device") or ev.env.get("device") or "-")
         + (f" ({ev.env['device_name']})" if ev.env.get("device_name") else "")),
        ("data", _data_label(s.get("data") or ev.recipe.data.source)),
    ]
    for k, v in rows:
        tab.add_row(k, v)
    return tab


def _model_part(ev: Evidence) -> list[str]:
    from cifarctl.ui.tables import summary_tables

    m = ev.model
    top = type(m)(**{**m.__dict__, "layers": [r for r in m.layers if r["depth"] == 1]})
    top_layers, totals = summary_tables(top, dotted=True)
    full_layers, _ = summary_tables(m, dotted=True)
    top_layers.title = full_layers.title = None
    head = (f"{m.total_params:,} parameters ({m.trainable_params:,} trainable), "
            f"{m.mult_adds / 1e6:,.2f} M mult-adds, final receptive field **{m.receptive_field} px** "
            f"(jump {m.jump}).")
    return [head, "Top-level blocks:", markdown(top_layers),
            "<details><summary>Every layer</summary>\n\n" + markdown(full_layers) + "\n</details>",
            markdown(totals, heading=None)]


def _stats_table(stats: dict[str, Any]) -> Tabular:
    tab = Tabular(None, [Column("split"), Column("channel"), Column("mean", "right"), Column("std", "right")])
    for split in ("train", "test"):
        st = stats.get(f"{split}_stats")
        for i, ch in enumerate(("R", "G", "B")[: len(st["mean"]) if st else 0]):
            tab.add_row(split, ch, f"{st['mean'][i]:.4f}", f"{st['std'][i]:.4f}")
    return tab


def _data_part(ev: Evidence, images: Path, prefix: str) -> list[str]:
    from cifarctl.analysis.samples import augment_for_display, per_class
    from cifarctl.ui.report_images import sample_grid

    if ev.data is None:
        return [f"_Unavailable: {md_text(ev.data_problem or SECTION_NEEDS_DATA)}._"]
    d, r = ev.data, ev.recipe
    steps = r.data.augment or []
    idx = per_class(d.train_y, len(d.classes), SAMPLES_PER_CLASS)
    picked = d.train_x[idx]
    labels = [int(d.train_y[i]) for i in idx]
    orig = sample_grid(picked, labels, list(d.classes), images / f"{prefix}samples.png",
                       f"training images, the first {SAMPLES_PER_CLASS} of each class")
    aug = sample_grid(augment_for_display(picked, steps, r.data.normalize, seed=r.seed or 0), labels,
                      list(d.classes), images / f"{prefix}augmented.png", "the same images after the train augmentation")
    names = [next(iter(s)) if isinstance(s, dict) else str(s) for s in steps]
    out = [markdown(_stats_table(ev.data_stats), heading=None),
           f"Train augmentation: {' → '.join(names) if names else 'none'}. Inputs normalised with the recipe's "
           f"constants (`data.normalize`), mean {_triple(r.data.normalize.mean)} and std {_triple(r.data.normalize.std)} "
           f"({len(d.train_y):,} train / {len(d.test_y):,} test images; the table above is their own statistics).",
           f"![training images]({md_target('images/' + orig.name)})", f"![augmented]({md_target('images/' + aug.name)})"]
    return out


def _training_part(ev: Evidence, images: Path, prefix: str) -> list[str]:
    from cifarctl.training.curves import write_curves

    r, run = ev.recipe, ev.run
    d = r.to_dict()
    out = [md_block(r.to_yaml().rstrip(), "yaml"),
           f"Optimizer {_settings(d['optimizer'])}; scheduler {_settings(d['scheduler'])}; "
           f"loss {_settings(d['loss'])}; batch {r.data.batch_size}, {r.epochs} epochs, seed {r.seed}."]
    from cifarctl.fsutil import read_regular

    lr_bytes = read_regular(run.path / "lr_find.png")  # a symlink (to a secret, say) is not copied
    if lr_bytes is not None:
        from cifarctl.fsutil import write_atomic

        write_atomic(images / f"{prefix}lr_find.png", lr_bytes)
        lr = _read_json(run.path / "lr_find.json")
        chosen = d["scheduler"].get("max_lr")
        out.append(f"The run chose max_lr = {chosen} with an LR range test"
                   + (f" ({lr.get('reason')})" if lr.get("reason") else "") + ":")
        out.append(f"![LR range test]({md_target(f'images/{prefix}lr_find.png')})")
    if run.metrics:
        curves = images / f"{prefix}curves.png"
        write_curves(curves, run.metrics, title=run.name)
        out.append(f"![loss, accuracy and learning rate by epoch]({md_target('images/' + curves.name)})")
        log = Tabular(None, [Column("epoch", "right"), Column("train loss", "right"), Column("train acc", "right"),
                             Column("test loss", "right"), Column("test acc", "right"), Column("lr", "right"),
                             Column("seconds", "right")])
        for m in run.metrics:
            log.add_row(str(m.get("epoch")), _f(m.get("train_loss"), "{:.4f}"), _f(m.get("train_acc"), "{:.2f}"),
                        _f(m.get("test_loss"), "{:.4f}"), _f(m.get("test_acc"), "{:.2f}"), _f(m.get("lr"), "{:.2e}"),
                        _f(m.get("seconds"), "{:.1f}"))
        out += ["Epoch log:", markdown(log)]
    else:
        out.append("_No epoch finished yet: no curves or epoch log._")
    return out


def _f(v, fmt: str) -> str:
    return "-" if not isinstance(v, (int, float)) else fmt.format(v)


def _eval_part(ev: Evidence, images: Path, prefix: str) -> list[str]:
    from cifarctl.ui.report_images import confusion_png
    from cifarctl.ui.tables import eval_lines, eval_tables

    if ev.eval is None:
        return [f"_Unavailable: {md_text(ev.data_problem or SECTION_NEEDS_DATA)}._"]
    head, acc = eval_lines(ev.eval)
    per, _cm, *top = eval_tables(ev.eval)
    png = confusion_png(ev.eval["confusion"], ev.eval["classes"], images / f"{prefix}confusion.png",
                        f"{ev.run.name}: confusion matrix, % of each true class")
    return [f"{md_text(head)}; **{md_text(acc)}**.", markdown(per, heading=None), f"![confusion matrix]({md_target('images/' + png.name)})",
            *([markdown(top[0], heading=None)] if top else [])]


def _missed_part(ev: Evidence, images: Path, prefix: str) -> list[str]:
    from cifarctl.analysis.misclassified import write_grid

    if ev.missed is None:
        return [f"_Unavailable: {md_text(ev.data_problem or SECTION_NEEDS_DATA)}._"]
    m = ev.missed
    png = write_grid(m, images / f"{prefix}misclassified.png", cols=ev.grid_cols)
    text = (f"The {len(m.items)} most confident mistakes of {m.total_wrong:,} on {m.total:,} test images"
            + (f", with Grad-CAM of the predicted class at {md_code(m.layer)}" if m.layer else "") + ":")
    return [text, f"![misclassified images]({md_target('images/' + Path(png).name)})"]


def set_options(env: dict[str, Any]) -> list[str]:
    """The ``--set`` values of the command that started the run (``env.json``)."""
    argv = [str(a) for a in env.get("command") or []]
    return [b for a, b in zip(argv, argv[1:]) if a == "--set"] + \
        [a.split("=", 1)[1] for a in argv if a.startswith("--set=")]


def reduced_budget(ev: Evidence) -> str | None:
    """One line when the run trained on less than its bundled recipe asks for: fewer
    epochs or a train subset (with the ``--set`` options that made it so), else None."""
    parts = reduced_parts(ev)
    if not parts:
        return None
    sets = set_options(ev.env)
    how = f" ({md_code('--set ' + ' '.join(sets))})" if sets else ""
    return (f"**Reduced run**: {' and '.join(parts)}{how}. Its accuracy is not the recipe's result, "
            "and the analysis draws no conclusion about fitting from it.")


def reduced_parts(ev: Evidence) -> list[str]:
    """How a run is shorter than its bundled recipe: fewer epochs, a train subset ([] when not)."""
    from cifarctl.bundled import bundled_recipes
    from cifarctl.recipe.load import load_recipe

    r, parts = ev.recipe, []
    path = bundled_recipes().get(r.name)
    try:
        full = load_recipe(str(path)).epochs if path is not None else None
    except Exception:  # noqa: BLE001  a bundled recipe of another version: no comparison
        full = None
    if full is not None and r.epochs < full:
        parts.append(f"{r.epochs} of the recipe's {full} epochs")
    if r.data.train_subset:
        parts.append(f"a subset of {r.data.train_subset:,} train images")
    return parts


def _triple(values) -> str:
    return "(" + ", ".join(f"{float(v):.4f}" for v in values) + ")"


def held_to(recipe) -> float | None:
    """The accuracy a run must reach to PASS: the higher of the seed's figure and the assignment's threshold."""
    from cifarctl.recipe.targets import assignment_threshold

    figures = [v for v in (recipe.target.min_test_acc, assignment_threshold(recipe)) if v is not None]
    return max(figures) if figures else None


def _analysis_part(ev: Evidence) -> list[str]:
    from cifarctl.analysis.findings import findings

    lines = findings(ev.run.metrics, held_to(ev.recipe), ev.eval, reduced=reduced_budget(ev) is not None)
    return ["\n".join(f"- {text}" for _, text in lines) if lines else "_No epoch finished yet._"]


def _reproduce_part(ev: Evidence) -> list[str]:
    env = ev.env
    return [md_block(command_of(env, ev.recipe, ev.recipe.seed, ev.summary.get("data")), "bash"),
            md_text(f"cifarctl {env.get('cifarctl', '?')}, torch {env.get('torch', '?')}, "
                    f"python {env.get('python', '?')};") + f" run folder {md_code(ev.run.name)}."]


def run_section(ev: Evidence, images: Path, prefix: str, level: str) -> str:
    """One run's write-up, headings at ``level`` ("##" alone, "###" under a comparison)."""
    r = ev.recipe
    sub = level + "#"
    parts = [f"{level} {md_text(ev.run.name)}: {md_text(r.assignment or r.name)}" if level != "#"
             else f"# {md_text(r.name)}: {md_text(r.assignment)}",
             md_text((r.description or "").strip()) or f"Recipe {md_code(r.name)}, model {md_code(r.model)}.",
             *(f"> {note}" for note in [reduced_budget(ev)] if note),
             f"{sub} Target and result", markdown(_target_table(ev), heading=None),
             *_reference_part(ev),
             markdown(_result_table(ev), heading=None),
             *_rules_part(ev, sub),
             f"{sub} Model", *_model_part(ev),
             f"{sub} Data and augmentation", *_data_part(ev, images, prefix),
             f"{sub} Training", *_training_part(ev, images, prefix),
             f"{sub} Evaluation", *_eval_part(ev, images, prefix),
             f"{sub} Misclassified images", *_missed_part(ev, images, prefix),
             f"{sub} Analysis", *_analysis_part(ev),
             f"{sub} Reproduce", *_reproduce_part(ev)]
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


# ------------------------------------------------------------------------ several runs
def comparison_section(runs, groups, images: Path) -> str:
    """Every run in one table and the groups' curves overlaid (the groups' figures are the
    Findings table; each group's targets are in its section)."""
    from cifarctl.analysis.compare import curves
    from cifarctl.ui.compare_view import has_groups_table, runs_table
    from cifarctl.ui.report_images import overlay_png

    by_run = not has_groups_table(groups)
    panels = [(m, curves(runs, groups, m, by_run)) for m in ("test_acc", "train_acc", "test_loss")]
    png = overlay_png(panels, images / "comparison.png",
                      f"{', '.join(sorted({r.recipe for r in runs}))}: {len(runs)} runs compared")
    parts = ["## Comparison", markdown(runs_table(runs), heading=None),
             f"![runs compared]({md_target('images/' + png.name)})"]
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def _verdict(ev: Evidence) -> str:
    """The run's target verdict as the report judges it (the seed's figure and the assignment's threshold)."""
    from cifarctl.recipe.targets import assignment_threshold, target_verdict

    v = target_verdict(ev.recipe.target, best_acc=ev.run.best_acc, params=ev.run.params, epochs=ev.recipe.epochs,
                       assignment=assignment_threshold(ev.recipe))
    return ("PASS" if v["passed"] else "FAIL") if v["checks"] and ev.run.status != "running" else "-"


# ------------------------------------------------------------------------ the whole report
def write_report(run_dirs: list[Path], out_dir: Path | None = None, *, data: str | None = None, which: str = "best",
                 n: int | None = None, gradcam: bool = False, device: str = "auto",
                 say: Callable[[str], None] = lambda s: None) -> Report:
    """Write ``out_dir/README.md`` and ``out_dir/images/*.png`` for the runs in ``run_dirs``."""
    from cifarctl.analysis.compare import collect_runs, group_runs
    from cifarctl.errors import CifarctlError, UsageError

    start = time.perf_counter()
    runs, skipped = collect_runs(run_dirs)
    runs = sorted(runs, key=lambda r: r.name)
    if not runs:
        why = "; ".join(f"{p}: {w}" for p, w in skipped[:5])
        raise UsageError(f"no run folders to report in {', '.join(map(str, run_dirs))}" + (f" ({why})" if why else ""))
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(runs)
    check_out_dir(out_dir)
    images = out_dir / "images"
    try:
        images.mkdir(parents=True, exist_ok=True)
        (out_dir / MARKER).touch()
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot create the report folder ({exc.strerror or exc})") from None
    report = Report(path=out_dir / "README.md", runs=runs, skipped=skipped)
    multi = len(runs) > 1  # decided before any is skipped: the layout (headings, image names) stays
    sections, reported, evidence = [], [], []
    for r in runs:
        try:
            ev = gather(r, data=data, which=which, n=n, gradcam=gradcam, device=device, say=say)
        except CifarctlError as exc:  # e.g. a recipe.yaml that does not validate: skipped, as compare does
            skipped.append((r.path, str(exc)))
            continue
        reported.append(r)
        if ev.data_problem:
            report.warnings.append(f"{r.name}: {ev.data_problem}; the sections that need it say so")
        if multi:
            evidence.append(ev)
        else:
            sections.append(run_section(ev, images, "", "#"))
        report.verdicts[r.name] = _verdict(ev)
        report.accuracy[r.name] = ev.eval["accuracy"] if ev.eval else None
    if not reported:
        raise UsageError("no run folder could be reported: " + "; ".join(f"{p}: {w}" for p, w in skipped[:3]))
    runs = report.runs = reported
    head = []
    if multi:  # findings, the shared set-up once, each group with its runs folded
        from cifarctl.ui.report_groups import groups_report

        groups = group_runs(runs)
        head = [groups_report(evidence, groups, images, comparison_section(runs, groups, images))]
    tail = [f"_Generated by cifarctl report on {time.strftime('%Y-%m-%d %H:%M')}._\n"]
    if skipped:
        tail.insert(0, "Skipped folders:\n\n" + "\n".join(f"- {md_code(p)}: {md_text(w)}" for p, w in skipped) + "\n")
    text = "\n".join(head + sections + tail)
    from cifarctl.fsutil import write_atomic

    write_atomic(report.path, text.encode("utf-8"))
    report.seconds = time.perf_counter() - start
    return report
