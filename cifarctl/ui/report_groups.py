"""The report of several runs (a sweep, or several recipes): findings first, then what
every run shares shown once with the differences per group, then each group with its runs
folded, and one command that reproduces them all.

Renders only, like :mod:`cifarctl.ui.report`: the evidence comes from
:mod:`cifarctl.analysis.evidence`, the numbers from :mod:`cifarctl.analysis.findings` (the
groups side by side and the sentences drawn from them), the grouping from
:mod:`cifarctl.analysis.compare`, the tables from :mod:`cifarctl.tabular`. Each run's own section is :mod:`cifarctl.ui.report`'s pieces,
inside a ``<details>`` fold.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from cifarctl.analysis.compare import RunGroup
from cifarctl.analysis.findings import class_spread, findings, group_figures, group_findings, pm
from cifarctl.analysis.grouping import differing_keys, finite_mean, fmt_value
from cifarctl.analysis.misclassified import write_grid
from cifarctl.analysis.rules import check_rules
from cifarctl.recipe.load import flatten
from cifarctl.recipe.targets import assignment_threshold, target_verdict
from cifarctl.safetext import md_block, md_code, md_target, md_text
from cifarctl.tabular import Column, Tabular, markdown
from cifarctl.training.curves import write_curves
from cifarctl.ui.compare_view import _dur as _compare_dur
from cifarctl.ui.report import _data_label, _dur, _quote, command_of, held_to, reduced_budget, reduced_parts, set_options
from cifarctl.ui.report import _data_part as run_data_part
from cifarctl.ui.report_images import confusion_png
from cifarctl.ui.tables import rules_table, summary_tables


def _join(parts: list[str]) -> str:
    return "\n\n".join(p.rstrip("\n") for p in parts if p) + "\n"


def _fold(summary: str, parts: list[str]) -> str:
    return f"<details><summary>{md_text(summary)}</summary>\n\n" + _join(parts) + "\n</details>"


def threshold_of(recipe) -> float | None:
    """The accuracy a group is held to in the Findings: the assignment's, else the recipe's target."""
    if recipe.rules is not None and recipe.rules.min_test_acc is not None:
        return recipe.rules.min_test_acc
    return recipe.target.min_test_acc


# ------------------------------------------------------------------------ findings
def figures(sections) -> list[Any]:
    evals = {ev.run.name: ev.eval for _, evs in sections for ev in evs}
    return [group_figures(g, evals, threshold_of(evs[0].recipe)) for g, evs in sections]


def _reached(f) -> str:
    if f.threshold is None:
        return "-"
    cells = ["never" if e is None else str(e) for e in f.reached]
    return ", ".join(cells)


def findings_tables(figs) -> list[Tabular]:
    """The groups side by side, and their per-class accuracies where they differ most."""
    thresholds = {f.threshold for f in figs}
    reach = (f"epoch at {next(iter(thresholds)):.2f} %" if len(thresholds) == 1 and None not in thresholds
             else "epoch at threshold")
    side = Tabular("Groups side by side (mean ± std over seeds)", [
        Column("group"), Column("runs", "right"), Column("best test acc %", "right"), Column("final %", "right"),
        Column("train − test (points)", "right"), Column(reach, "right"), Column("time", "right")])
    for f in figs:
        gap = "-" if f.gap[0] is None else (f"{f.gap[0]:+.2f}" + ("" if f.gap[1] is None else f" ± {f.gap[1]:.2f}"))
        time = "-" if f.seconds[0] is None else _compare_dur(f.seconds[0]) + ("" if f.seconds[1] is None else f" ± {_compare_dur(f.seconds[1])}")
        side.add_row(f.label, str(f.n), pm(f.best), pm(f.final), gap, _reached(f), time)
    side.notes = ["train − test: train accuracy (augmented, averaged over the epoch) minus test accuracy, "
                  "at the last epoch; epoch at: the first epoch each run reached it."]
    out = [side]
    spread = class_spread(figs)
    if spread:
        per = Tabular("Per-class test accuracy % (mean over seeds), where the groups differ most first",
                      [Column("class")] + [Column(f.label, "right") for f in figs] + [Column("apart", "right")])
        for cls, width in spread:
            per.add_row(cls, *(pm(f.per_class[cls], digits=1) for f in figs), f"{width:.1f}")
        out.append(per)
    return out


def findings_section(sections, reduced: str | None) -> str:
    figs = figures(sections)
    tables = findings_tables(figs)
    text = group_findings(figs, reduced)
    if not text:
        text = ["One group only: nothing to compare side by side."]
    return _join(["## Findings", *(markdown(t, heading=None) for t in tables),
                  "\n".join(f"- {md_text(s)}" for s in text)])


# ------------------------------------------------------------------------ shared set-up
def _recipe_part(sections) -> list[str]:
    """The settings that differ between groups as a table, the rest as one YAML."""
    labels = [g.label for g, _ in sections]
    flats = [{k: v for k, v in flatten(evs[0].recipe.to_dict(), keep_empty=True).items() if k != "seed"} for _, evs in sections]
    keys = differing_keys(flats) if len(flats) > 1 else []
    out = []
    if keys:
        tab = Tabular(None, [Column("setting")] + [Column(label) for label in labels])
        for k in keys:
            tab.add_row(k, *((f[k] if isinstance(f[k], str) else fmt_value(f[k])) if k in f else "-" for f in flats))
        out += ["Settings that differ between the groups:", markdown(tab, heading=None)]
    shared = _without(sections[0][1][0].recipe.to_dict(), set(keys) | {"seed"})
    body = yaml.safe_dump(shared, sort_keys=False, default_flow_style=None, width=100).rstrip()
    seeds = sorted({ev.recipe.seed for _, evs in sections for ev in evs if ev.recipe.seed is not None})
    out.append(_fold("The rest of the recipe, the same in every run (seed: per run, "
                     f"{', '.join(map(str, seeds)) or '-'})", [md_block(body, "yaml")]))
    return out


def _without(d: dict, dotted: set[str], prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key in dotted:
            continue
        if isinstance(v, dict) and v:
            v = _without(v, dotted, key + ".")
            if not v:
                continue
        out[k] = v
    return out


def _rules_part(sections, figs) -> list[str]:
    """The assignment's rules measured on each group's model (accuracy: the group's mean
    best), one table when the groups share the rules."""
    have = [(g, evs, f) for (g, evs), f in zip(sections, figs) if evs[0].recipe.rules is not None]
    if not have:
        return []
    rows = [check_rules(evs[0].recipe, best_acc=f.best[0], summary=evs[0].model, model=evs[0].network)
            for _, evs, f in have]
    same = all([(r["rule"], r["required"]) for r in rs] == [(r["rule"], r["required"]) for r in rows[0]] for rs in rows)
    note = "Accuracy rows are measured on each group's mean best test accuracy; each run's own verdict is in its group."
    if not same:
        return ["### Rules", note, *(f"{md_text(g.label)}:\n\n" + markdown(rules_table(evs[0].recipe, rs), heading=None)
                                     for (g, evs, _), rs in zip(have, rows))]
    name = have[0][1][0].recipe.rules.assignment or "the assignment"
    tab = Tabular(None, [Column("rule"), Column("required")] + [Column(g.label) for g, _, _ in have])
    for i, r in enumerate(rows[0]):
        cells = []
        for rs in rows:
            ok = rs[i]["ok"]
            cells.append(f"{rs[i]['measured']} {'-' if ok is None else 'PASS' if ok else 'FAIL'}")
        tab.add_row(r["rule"], r["required"], *cells)
    return [f"### Rules of {md_text(name)}", note, markdown(tab, heading=None)]


def _model_part(sections) -> list[str]:
    """The model table once when every group has the same blocks, the layers that differ
    beside each other, and each model's totals in one table."""
    models = [(g.label, evs[0].model) for g, evs in sections]
    tops, fulls = [], []
    for _, m in models:
        top = type(m)(**{**m.__dict__, "layers": [r for r in m.layers if r["depth"] == 1]})
        t, _ = summary_tables(top, dotted=True)
        f, _ = summary_tables(m, dotted=True)
        t.title = f.title = None
        tops.append(t)
        fulls.append(f)
    out = ["## Model"]
    sizes = Tabular(None, [Column("group"), Column("model"), Column("params", "right"), Column("mult-adds", "right"),
                           Column("receptive field", "right")])
    for label, m in models:
        sizes.add_row(label, m.model, f"{m.total_params:,}", f"{m.mult_adds / 1e6:,.2f} M",
                      f"{m.receptive_field} px (jump {m.jump})")
    out.append(markdown(sizes, heading=None))
    if all(t.rows == tops[0].rows for t in tops):
        which = "every group" if len(tops) > 1 else models[0][0]
        out += [f"Top-level blocks, the same in {which}:", markdown(tops[0])]
    else:
        out += [_fold(f"{label}: top-level blocks", [markdown(t)]) for (label, _), t in zip(models, tops)]
    if len(fulls) > 1:
        cells = [{row["name"]: f"{row['type']}({row.get('args', '')}), {row['params']:,} params" for row in m.layers}
                 for _, m in models]
        order = list(dict.fromkeys(row["name"] for _, m in models for row in m.layers))
        diff = Tabular(None, [Column("layer")] + [Column(label) for label, _ in models])
        for name in order:
            row = [c.get(name, "none") for c in cells]
            if len(set(row)) > 1:
                diff.add_row(name, *row)
        out.append("Layers that differ between the groups:\n\n" + markdown(diff, heading=None)
                   if diff.rows else "Every layer is the same in every group.")
    names = ", ".join(md_code(f"cifarctl summary {n}") for n in dict.fromkeys(m.model for _, m in models))
    out.append(f"Every layer: {names}.")
    return out


def _data_part(sections, images: Path) -> list[str]:
    """Data and augmentation once; again for a group whose augmentation or normalisation differs."""
    out, seen = ["## Data and augmentation"], []
    for g, evs in sections:
        ev = next((e for e in evs if e.data is not None), evs[0])
        key = (repr(ev.recipe.data.augment), repr(ev.recipe.data.normalize))
        if key in seen:
            continue
        seen.append(key)
        if len(sections) > 1:
            out.append(f"{md_text(g.label)}" + (" (and every group with the same augmentation):" if not out[1:] else ":"))
        out += run_data_part(ev, images, f"{_file_label(g.label)}-")
    return out


def _file_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "group"


def _epoch_log(sections) -> list[str]:
    """The epoch log, each group's mean over its runs, side by side."""
    both = len(sections) <= 3
    cols = [Column("epoch", "right")]
    for g, _ in sections:
        cols += ([Column(f"{g.label} train", "right")] if both else []) + [Column(f"{g.label} test", "right")]
    tab = Tabular(None, cols)
    epochs = sorted({m["epoch"] for _, evs in sections for ev in evs for m in ev.run.metrics})
    for e in epochs:
        cells = [str(e)]
        for _, evs in sections:
            rows = [m for ev in evs for m in ev.run.metrics if m["epoch"] == e]
            for key in (("train_acc", "test_acc") if both else ("test_acc",)):
                mean = finite_mean([m[key] for m in rows if isinstance(m.get(key), (int, float))])
                cells.append("-" if mean is None else f"{mean:.2f}")
        tab.add_row(*cells)
    return ["## Training", "Accuracy % by epoch, each group's mean over its runs (every run's own log is in its "
            "folder's metrics.csv; its curves are in its fold below):", markdown(tab, heading=None)]


# ------------------------------------------------------------------------ groups and runs
def _verdict_table(evs) -> Tabular:
    names = {"min_test_acc": "≥ {} (seed's)", "assignment_acc": "≥ {} (assignment)", "max_params": "params ≤ {}",
             "max_epochs": "epochs ≤ {}"}
    verdicts = [target_verdict(ev.recipe.target, best_acc=ev.run.best_acc, params=ev.run.params,
                               epochs=ev.recipe.epochs, assignment=assignment_threshold(ev.recipe)) for ev in evs]
    checks = verdicts[0]["checks"]
    fmt = {"min_test_acc": "{:.2f} %", "assignment_acc": "{:.2f} %", "max_params": "{:,}", "max_epochs": "{}"}
    cols = [Column("run"), Column("seed", "right"), Column("best test acc", "right"), Column("final", "right")]
    cols += [Column(names.get(c["name"], c["name"]).format(fmt.get(c["name"], "{}").format(c["target"])))
             for c in checks]
    tab = Tabular(None, cols + [Column("target")])
    for ev, v in zip(evs, verdicts):
        r = ev.run
        best = "-" if r.best_acc is None else f"{r.best_acc:.2f} % (ep {r.best_epoch})"
        cells = ["PASS" if c["passed"] else "FAIL" for c in v["checks"]]
        tab.add_row(r.name, str(r.seed if r.seed is not None else "-"), best,
                    "-" if r.final_acc is None else f"{r.final_acc:.2f} %",
                    *cells[:len(checks)], ("PASS" if v["passed"] else "FAIL") if v["checks"] else "-")
    return tab


def _run_fold(ev, images: Path, shown_missed: bool) -> str:
    r, prefix = ev.run, f"{ev.run.name}-"
    head = (f"{r.status}, {r.epochs} of {r.epochs_planned or r.epochs} epochs in {_dur(r.total_seconds)}"
            + ("" if r.images_per_s is None else f" ({r.images_per_s:,.0f} images/s)")
            + f" on {ev.summary.get('device') or ev.env.get('device') or '-'}"
            + f"; data {_data_label(ev.summary.get('data') or ev.recipe.data.source)}"
            + f"; best epoch chosen on the {'validation' if r.selected_on == 'val' else 'test'} split.")
    parts = [md_text(head)]
    pics = []
    if r.metrics:
        curves = write_curves(images / f"{prefix}curves.png", r.metrics, title=r.name) or images / f"{prefix}curves.png"
        pics.append(f"![curves of {md_text(r.name)}]({md_target('images/' + Path(curves).name)})")
    if ev.eval is not None:
        png = confusion_png(ev.eval["confusion"], ev.eval["classes"], images / f"{prefix}confusion.png",
                            f"{r.name}: confusion matrix, % of each true class")
        pics.append(f"![confusion matrix of {md_text(r.name)}]({md_target('images/' + png.name)})")
        parts.append(md_text(f"Evaluated checkpoints/{ev.eval.get('checkpoint', 'best.pt').rsplit('/', 1)[-1]} "
                             f"(epoch {ev.eval['epoch']}) on {ev.eval['images']:,} test images: accuracy "
                             f"{ev.eval['accuracy']:.2f} %."))
    elif ev.data_problem:
        parts.append(f"_Not evaluated: {md_text(ev.data_problem)}._")
    if pics:
        parts.append(" ".join(pics))
    lines = findings(r.metrics, held_to(ev.recipe), ev.eval, reduced=reduced_budget(ev) is not None)
    if lines:
        parts.append("Analysis: " + md_text(" ".join(text for _, text in lines)))
    if ev.missed is not None and not shown_missed:
        png = write_grid(ev.missed, images / f"{prefix}misclassified.png", cols=ev.grid_cols)
        parts.append(f"The {len(ev.missed.items)} most confident mistakes of {ev.missed.total_wrong:,}: "
                     f"![misclassified images of {md_text(r.name)}]({md_target('images/' + Path(png).name)})")
    parts.append(md_block(command_of(ev.env, ev.recipe, ev.recipe.seed, ev.summary.get("data")), "bash"))
    best = "-" if r.best_acc is None else f"{r.best_acc:.2f} %"
    return _fold(f"{r.name} (seed {r.seed if r.seed is not None else '-'}): best {best}", parts)


def group_section(group, evs, images: Path, reduced_said: bool) -> str:
    r = evs[0].recipe
    parts = [f"## {md_text(group.label)}: {md_text(group.over_seeds)}",
             md_text((r.description or "").strip()) or f"Recipe {md_code(r.name)}, model {md_code(r.model)}."]
    notes = set() if reduced_said else {reduced_budget(ev) for ev in evs} - {None}
    parts += [f"> {n}" for n in sorted(notes)]
    parts.append(markdown(_verdict_table(evs), heading=None))
    with_missed = [ev for ev in evs if ev.missed is not None]
    best = max(with_missed, key=lambda ev: ev.run.best_acc or 0.0, default=None)
    if best is not None:
        m = best.missed
        png = write_grid(m, images / f"{best.run.name}-misclassified.png", cols=best.grid_cols)
        parts += [f"The {len(m.items)} most confident mistakes of {md_text(best.run.name)} ({m.total_wrong:,} wrong of "
                  f"{m.total:,} test images)" + (f", with Grad-CAM at {md_code(m.layer)}" if m.layer else "") + ":",
                  f"![misclassified images of {md_text(best.run.name)}]({md_target('images/' + Path(png).name)})"]
    parts += [_run_fold(ev, images, ev is best) for ev in evs]
    return _join(parts)


# ------------------------------------------------------------------------ reproduce
def sweep_command(folder: Path, spec: dict[str, Any] | None, data: str | None) -> str | None:
    """The ``cifarctl sweep`` command that made ``folder`` (from its ``sweep.json``, ``spec``), or None."""
    if not isinstance(spec, dict) or not isinstance(spec.get("recipes"), list):
        return None
    args = ["sweep", *map(str, spec["recipes"])]
    for a in spec.get("axes") or []:
        if not isinstance(a, dict):
            return None
        if a.get("low") is not None:
            kind = "log:" if a.get("log") else "int:" if a.get("integer") else ""
            args += ["--set", f"{a['key']}={kind}{a['low']:g}..{a['high']:g}"]
        else:
            args += ["--set", f"{a['key']}=" + ",".join("null" if v is None else str(v).lower() if isinstance(v, bool)
                                                       else str(v) for v in a.get("values") or [])]
    if spec.get("seeds"):
        args += ["--seeds", ",".join(map(str, spec["seeds"]))]
    if spec.get("sampler") not in (None, "grid"):
        args += ["--sampler", str(spec["sampler"]), "--trials", str(spec.get("trials"))]
    extra = [str(a) for a in spec.get("extra") or []]
    args += extra
    if data and data != "cifar10" and "--data" not in extra:
        args += ["--data", data]
    return "cifarctl " + " ".join(_quote(a) for a in args + ["--out", str(folder)])


def reproduce_section(evs, sweep: dict[str, Any] | None) -> str:
    """How to make the runs again: the sweep's command (``sweep``: its sweep.json) or one command each."""
    folders = {ev.run.path.parent.parent for ev in evs}
    data = next((ev.summary.get("data") for ev in evs if isinstance(ev.summary.get("data"), str)), None)
    cmd = sweep_command(next(iter(folders)), sweep, data) if len(folders) == 1 else None
    if cmd is not None:
        text = [f"The sweep, all {len(evs)} runs (the same command again resumes it; finished runs are kept):",
                md_block(cmd, "bash"), f"Then this report: {md_code('cifarctl report ' + str(next(iter(folders))))}."]
    else:
        text = ["Every run, one command each:",
                md_block("\n".join(command_of(ev.env, ev.recipe, ev.recipe.seed, ev.summary.get("data")) for ev in evs),
                         "bash")]
    env = evs[0].env
    return _join(["## Reproduce", *text, md_text(f"cifarctl {env.get('cifarctl', '?')}, torch {env.get('torch', '?')}, "
                                                 f"python {env.get('python', '?')}.")])


# ------------------------------------------------------------------------ the document
def sections_of(evs, groups) -> list[tuple[Any, list]]:
    """``(group, its evidence)`` in group order; a run in no group (unfinished) is a group of its own."""
    by_name = {ev.run.name: ev for ev in evs}
    out, placed = [], set()
    for g in groups:
        members = [by_name[r.name] for r in g.runs if r.name in by_name]
        if members:
            g.runs = [ev.run for ev in members]
            out.append((g, members))
            placed.update(ev.run.name for ev in members)
    for ev in evs:
        if ev.run.name not in placed:
            r = ev.run
            out.append((RunGroup(recipe=r.recipe, model=r.model, epochs=r.epochs_planned, runs=[r],
                                 label=f"{r.name} ({r.status})", best_mean=r.best_acc, final_mean=r.final_acc,
                                 time_mean=r.total_seconds), [ev]))
    return out


def groups_report(evs, groups, images: Path, comparison: str, sweep: dict[str, Any] | None = None) -> str:
    """The whole README.md of several runs but its tail (``sweep``: the sweep.json of their folder)."""
    sections = sections_of(evs, groups)
    parts = {" and ".join(reduced_parts(ev)) for ev in evs}
    reduced = next(iter(parts)) if len(parts) == 1 else "some of them shorter than their recipes"
    reduced = reduced or None
    note = None
    if reduced:
        sets = sorted({s for ev in evs for s in set_options(ev.env)})
        how = f" ({md_code('--set ' + ' '.join(sets))})" if sets else ""
        note = (f"**Reduced runs**: {md_text(reduced)}{how}. Their accuracies are not the recipes' results; "
                "the findings say what they can and cannot conclude.")
    recipes = sorted({ev.run.recipe for ev in evs})
    head = [f"# Report: {md_text(', '.join(recipes))}",
            md_text(f"{len(evs)} run{'s' if len(evs) != 1 else ''} in {len(sections)} "
                    f"group{'s' if len(sections) != 1 else ''} "
                    "(runs with the same settings but the seed form a group)."),
            *([f"> {note}"] if note else [])]
    figs = figures(sections)
    parts = [_join(head), findings_section(sections, reduced), comparison,
             _join(["## Recipe", *_recipe_part(sections), *_rules_part(sections, figs)]),
             _join(_model_part(sections)), _join(_data_part(sections, images)), _join(_epoch_log(sections)),
             *(group_section(g, members, images, len(parts) == 1) for g, members in sections),
             reproduce_section(evs, sweep)]
    return "\n".join(parts)
