"""Time ``cifarctl report`` for one run folder: a fresh process per repeat (start-up,
imports, data from the decoded cache, one inference pass, every PNG), as a user runs it.

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_cpu import _Paused  # noqa: E402


def _time_one(run: Path, extra: list[str], env: dict) -> dict:
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
    cases = [("report", ["--device", args.device])]
    if args.gradcam:
        cases.append(("report --gradcam", ["--device", args.device, "--gradcam"]))
    rows = []
    with _Paused(args.pause_others):
        _time_one(args.run, cases[0][1], env)  # warm the decoded-data cache and the page cache
        for name, extra in cases:
            times = [_time_one(args.run, extra, env) for _ in range(args.repeats)]
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
          f"process per repeat, the decoded-data cache warm; other python processes "
          f"{'paused' if args.pause_others else 'left running'}.", "",
          "| case | repeats | wall s (median) | CPU s (median) | wall s (each) |", "|:--|--:|--:|--:|:--|"]
    md += [f"| {r['case']} | {r['repeats']} | {r['wall_s_median']:.1f} | {r['cpu_s_median']:.1f} | "
           f"{', '.join(f'{w:.1f}' for w in r['wall_s'])} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
