"""The report folder of ``cifarctl report``: where it goes (a new folder, or one a report
wrote before), its README.md assembled from the sections of :mod:`cifarctl.ui.report` (one
run) or :mod:`cifarctl.ui.report_groups` (several), and its images/.

Renders only: the evidence comes from :mod:`cifarctl.analysis.evidence`, read and
evaluated before anything here runs.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarctl.analysis.compare import RunRecord, curves, group_runs
from cifarctl.analysis.evidence import Evidence
from cifarctl.errors import UsageError
from cifarctl.fsutil import write_atomic
from cifarctl.recipe.targets import assignment_threshold, target_verdict
from cifarctl.safetext import md_code, md_target, md_text
from cifarctl.tabular import markdown
from cifarctl.ui.compare_view import has_groups_table, runs_table
from cifarctl.ui.report import run_section
from cifarctl.ui.report_groups import groups_report
from cifarctl.ui.report_images import overlay_png

MARKER = ".cifarctl-report"  # in every report folder: what cifarctl may write over


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
    # names come from run folders (summary.json): one plain folder name, never a path
    names = sorted({re.sub(r"[^A-Za-z0-9._-]+", "_", str(r.recipe)).lstrip(".") or "run" for r in runs}) or ["runs"]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path("reports") / f"{'+'.join(names)[:80]}-{stamp}"


def check_out_dir(out_dir: Path) -> None:
    """A report goes into a new folder, or one a report wrote before (it has the marker):
    never over an unrelated README.md or images (``report -o .`` in a repository root)."""
    if not out_dir.exists() or (out_dir / MARKER).is_file():
        return
    for name in ("README.md", "images"):
        if os.path.lexists(out_dir / name):
            raise UsageError(f"--out {out_dir}: it holds {out_dir / name}, which a report would replace, and no "
                             f"earlier report wrote it (no {MARKER}); give a new folder")


def prepare_out_dir(out_dir: Path | None, runs: list[RunRecord]) -> Path:
    """The report folder (``out_dir``, else :func:`default_out_dir`), checked and made, with
    its images/ and marker: before any run is evaluated, so a bad ``--out`` costs nothing."""
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(runs)
    check_out_dir(out_dir)
    try:
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        (out_dir / MARKER).touch()
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: cannot create the report folder ({exc.strerror or exc})") from None
    return out_dir


# ------------------------------------------------------------------------ several runs
def comparison_section(runs, groups, images: Path) -> str:
    """Every run in one table and the groups' curves overlaid (the groups' figures are the
    Findings table; each group's targets are in its section)."""
    by_run = not has_groups_table(groups)
    panels = [(m, curves(runs, groups, m, by_run)) for m in ("test_acc", "train_acc", "test_loss")]
    png = overlay_png(panels, images / "comparison.png",
                      f"{', '.join(sorted({r.recipe for r in runs}))}: {len(runs)} runs compared")
    parts = ["## Comparison", markdown(runs_table(runs), heading=None),
             f"![runs compared]({md_target('images/' + png.name)})"]
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def _verdict(ev: Evidence) -> str:
    """The run's target verdict as the report judges it (the seed's figure and the assignment's threshold)."""
    v = target_verdict(ev.recipe.target, best_acc=ev.run.best_acc, params=ev.run.params, epochs=ev.recipe.epochs,
                       assignment=assignment_threshold(ev.recipe))
    return ("PASS" if v["passed"] else "FAIL") if v["checks"] and ev.run.status != "running" else "-"


# ------------------------------------------------------------------------ the whole report
def write_report(evidence: list[Evidence], out_dir: Path, skipped: list[tuple[Path, str]], *, several: bool,
                 sweep: dict[str, Any] | None = None) -> Report:
    """Write ``out_dir/README.md`` and ``out_dir/images/*.png`` (``out_dir`` made by
    :func:`prepare_out_dir`) of the runs' evidence; ``several``: the layout of several runs
    (headings, image names), decided before any was skipped; ``sweep``: the sweep.json of
    the folder they are in, for its command."""
    images = out_dir / "images"
    runs = [ev.run for ev in evidence]
    report = Report(path=out_dir / "README.md", runs=runs, skipped=skipped)
    sections = []
    for ev in evidence:
        if ev.data_problem:
            report.warnings.append(f"{ev.run.name}: {ev.data_problem}; the sections that need it say so")
        if not several:
            sections.append(run_section(ev, images, "", "#"))
        report.verdicts[ev.run.name] = _verdict(ev)
        report.accuracy[ev.run.name] = ev.eval["accuracy"] if ev.eval else None
    head = []
    if several:  # findings, the shared set-up once, each group with its runs folded
        groups = group_runs(runs)
        head = [groups_report(evidence, groups, images, comparison_section(runs, groups, images), sweep)]
    tail = [f"_Generated by cifarctl report on {time.strftime('%Y-%m-%d %H:%M')}._\n"]
    if skipped:
        tail.insert(0, "Skipped folders:\n\n" + "\n".join(f"- {md_code(p)}: {md_text(w)}" for p, w in skipped) + "\n")
    text = "\n".join(head + sections + tail)
    write_atomic(report.path, text.encode("utf-8"))
    return report
