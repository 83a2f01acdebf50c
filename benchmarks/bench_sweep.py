"""The cost of a sweep: the same 2 x 2 tiny grid (2 learning rates x 2 seeds, 1 epoch of
256 synthetic images) with 1 and with 2 workers, and the overhead per trial (its wall time
in the driver minus the training time its run folder reports: process start, imports,
data and model set-up, evaluation, files).

Usage:  python benchmarks/bench_sweep.py [--json OUT] [--md OUT]
Run it on an idle machine: the numbers are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def one(workers: int) -> dict:
    from cifarctl.runs import read_json
    from cifarctl.training.sweep import Spec, parse_axis, run_sweep

    spec = Spec(["s8_bn"], [parse_axis("optimizer.lr=0.02,0.05")], seeds=(1, 2),
                extra=["--set", "epochs=1", "--set", "data.batch_size=64", "--data", "synthetic:256:100",
                       "--device", "cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sw"
        t0 = time.perf_counter()
        ends = [ev for ev in run_sweep(out, spec, workers=workers) if ev["type"] == "end"]
        wall = time.perf_counter() - t0
        overhead = [ev["seconds"] - (read_json(out / "runs" / ev["name"] / "summary.json") or {}).get("total_seconds", 0)
                    for ev in ends]
    return {"workers": workers, "trials": len(ends), "wall_s": round(wall, 2),
            "trial_s": [round(ev["seconds"], 2) for ev in ends],
            "overhead_per_trial_s": round(statistics.median(overhead), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args()
    results = [one(1), one(2)]
    doc = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "results": results}
    lines = ["# Sweep cost (2 x 2 tiny grid: 2 lr x 2 seeds, 1 epoch of 256 synthetic images, CPU)", "",
             f"{doc['machine']}.", "", "| workers | trials | wall s | median overhead per trial s |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r['workers']} | {r['trials']} | {r['wall_s']} | {r['overhead_per_trial_s']} |" for r in results]
    md = "\n".join(lines) + "\n"
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    if args.md:
        Path(args.md).write_text(md)
    print(md)


if __name__ == "__main__":
    main()
