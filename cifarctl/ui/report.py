"""``cifarctl report``: one run's section of an assignment write-up (README.md and its pictures).

This module only renders: the evidence comes from :mod:`cifarctl.analysis.evidence` (the
run folder read once, its model built once, its checkpoint evaluated), the numbers from
the library (``compare``'s reading, ``summary``'s layer table, the findings of
:mod:`cifarctl.analysis.findings`), the tables from the one renderer (:mod:`cifarctl.tabular`).
The same runs give the same README.md byte for byte but for its "generated" line, so a
student can re-run it after training more. The report of several runs is
:mod:`cifarctl.ui.report_groups`; the folder and the whole document, :mod:`cifarctl.ui.report_folder`.

Size (~320 lines): one function per part of one run's section, over one :class:`Evidence`.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from cifarctl.analysis.evidence import Evidence
from cifarctl.analysis.findings import findings
from cifarctl.analysis.misclassified import write_grid
from cifarctl.analysis.rules import check_rules
from cifarctl.analysis.samples import augment_for_display, per_class
from cifarctl.fsutil import write_atomic
from cifarctl.recipe.targets import assignment_threshold, reference, target_verdict
from cifarctl.safetext import md_block, md_code, md_target, md_text
from cifarctl.tabular import Column, Tabular, markdown
from cifarctl.training.curves import write_curves
from cifarctl.ui.report_images import confusion_png, sample_grid
from cifarctl.ui.tables import eval_lines, eval_tables, rules_table, summary_tables

SAMPLES_PER_CLASS = 4
SECTION_NEEDS_DATA = "needs the test data, which could not be loaded"


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
    return shlex.quote(str(a))


# ------------------------------------------------------------------------ one run's section
def _target_table(ev: Evidence) -> Tabular:
    tab = Tabular(None, [Column("target"), Column("required", "right"), Column("measured", "right"),
                         Column("result")])
    names = {"min_test_acc": ("best test accuracy (seed's figure)", "≥ {:.2f} %", "{:.2f} %"),
             "assignment_acc": ("best test accuracy (assignment's threshold)", "≥ {:.2f} %", "{:.2f} %"),
             "max_params": ("parameters", "≤ {:,}", "{:,}"), "max_epochs": ("epochs", "≤ {}", "{}")}
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
    rows = check_rules(ev.recipe, best_acc=ev.run.best_acc, summary=ev.model,
                       model=ev.network)  # the Model section's pass and model
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
    r, run = ev.recipe, ev.run
    d = r.to_dict()
    out = [md_block(r.to_yaml().rstrip(), "yaml"),
           f"Optimizer {_settings(d['optimizer'])}; scheduler {_settings(d['scheduler'])}; "
           f"loss {_settings(d['loss'])}; batch {r.data.batch_size}, {r.epochs} epochs, seed {r.seed}."]
    if ev.lr_find_png is not None:
        write_atomic(images / f"{prefix}lr_find.png", ev.lr_find_png)
        lr = ev.lr_find
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
    if ev.eval is None:
        return [f"_Unavailable: {md_text(ev.data_problem or SECTION_NEEDS_DATA)}._"]
    head, acc = eval_lines(ev.eval)
    per, _cm, *top = eval_tables(ev.eval)
    png = confusion_png(ev.eval["confusion"], ev.eval["classes"], images / f"{prefix}confusion.png",
                        f"{ev.run.name}: confusion matrix, % of each true class")
    return [f"{md_text(head)}; **{md_text(acc)}**.", markdown(per, heading=None), f"![confusion matrix]({md_target('images/' + png.name)})",
            *([markdown(top[0], heading=None)] if top else [])]


def _missed_part(ev: Evidence, images: Path, prefix: str) -> list[str]:
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
    r, parts, full = ev.recipe, [], ev.full_epochs
    if full is not None and r.epochs < full:
        parts.append(f"{r.epochs} of the recipe's {full} epochs")
    if r.data.train_subset:
        parts.append(f"a subset of {r.data.train_subset:,} train images")
    return parts


def _triple(values) -> str:
    return "(" + ", ".join(f"{float(v):.4f}" for v in values) + ")"


def held_to(recipe) -> float | None:
    """The accuracy a run must reach to PASS: the higher of the seed's figure and the assignment's threshold."""
    figures = [v for v in (recipe.target.min_test_acc, assignment_threshold(recipe)) if v is not None]
    return max(figures) if figures else None


def _analysis_part(ev: Evidence) -> list[str]:
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
