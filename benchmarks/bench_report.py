"""Time ``cifarctl report`` for one run folder: a fresh process per repeat (start-up,
imports, data from the decoded cache, every PNG), as a user runs it, in two cases:

- ``report``: no kept predictions (``eval-predictions-test.npz`` deleted before each
  repeat): the report's own inference pass over the test split is timed too;
- ``report, predictions kept``: after an ``eval`` (or an earlier report) of the same
  checkpoint, whose predictions the report reads back.

The run folder is copied to a temporary folder first (the original is not touched), and
the copy's curves.png drawn again by this version, as its training would have drawn it (the
report reuses a run's own curves.png when it shows the same epochs in the same format).

    python benchmarks/bench_report.py RUN_DIR [--repeats 3] [--gradcam] [--pause-others]
        -> benchmarks/results/report-<device>.{json,md}

``--pause-others`` SIGSTOPs every other python process while it measures (training runs
sharing the cores) and resumes them afterwards, so the numbers are an idle machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_cpu import _Paused  # noqa: E402


KEPT = "eval-predictions-test.npz"


def _time_one(run: Path, extra: list[str], env: dict, kept: bool) -> dict:
    if not kept:
        (run / KEPT).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        before = os.times()
        proc = subprocess.run([sys.executable, "-m", "cifarctl", "report", str(run), "-o", f"{tmp}/rep", *extra],
                              capture_output=True, text=True, env=env)
        after = os.times()
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"cifarctl report failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return {"wall_s": round(wall, 2),
            "cpu_s": round((after.children_user - before.children_user) + (after.children_system - before.children_system), 2)}


def _redraw_curves(run: Path) -> None:
    from cifarctl.runs import write_curves

    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    write_curves(run / "curves.png", rows, title=run.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gradcam", action="store_true", help="also time --gradcam")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pause-others", action="store_true", help="SIGSTOP other python processes meanwhile")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    base = ["--device", args.device]
    cases = [("report", base, False), ("report, predictions kept", base, True)]
    if args.gradcam:
        cases += [("report --gradcam", [*base, "--gradcam"], False),
                  ("report --gradcam, predictions kept", [*base, "--gradcam"], True)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, _Paused(args.pause_others):
        run = Path(tmp) / args.run.name
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns(KEPT, "eval.json"))
        _redraw_curves(run)
        _time_one(run, base, env, kept=False)  # warm the decoded-data cache and the page cache
        for name, extra, kept in cases:
            if kept:
                _time_one(run, extra, env, kept=False)  # the pass the next ones read back
            times = [_time_one(run, extra, env, kept) for _ in range(args.repeats)]
            rows.append({"case": name, "repeats": args.repeats,
                         "wall_s_median": statistics.median(t["wall_s"] for t in times),
                         "cpu_s_median": statistics.median(t["cpu_s"] for t in times),
                         "wall_s": [t["wall_s"] for t in times]})
    summary = json.loads((args.run / "summary.json").read_text())
    meta = {"run": args.run.name, "recipe": summary.get("recipe"), "data": summary.get("data"),
            "device": args.device, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "python": platform.python_version(), "paused_others": args.pause_others,
            "date": time.strftime("%Y-%m-%d")}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"report-{args.device}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    md = [f"# `cifarctl report` time ({meta['machine']}, {meta['date']})", "",
          f"Run `{meta['run']}` (recipe {meta['recipe']}, data {meta['data']}), device {args.device}; a fresh "
          f"process per repeat, the decoded-data cache warm; \"predictions kept\": the test-split "
          f"predictions of an earlier eval/report read back (`{KEPT}`); other python processes "
          f"{'paused' if args.pause_others else 'left running'}.", "",
          "| case | repeats | wall s (median) | CPU s (median) | wall s (each) |", "|:--|--:|--:|--:|:--|"]
    md += [f"| {r['case']} | {r['repeats']} | {r['wall_s_median']:.1f} | {r['cpu_s_median']:.1f} | "
           f"{', '.join(f'{w:.1f}' for w in r['wall_s'])} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
