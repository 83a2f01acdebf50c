"""Start-up time of `cifarctl --help` and `cifarctl --version` (median of N runs).

Usage: python benchmarks/bench_startup.py [--runs 15] [--json OUT]
Goal: median at most 0.3 s on the 2-core development machine. torch must not be imported.
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
import time
from datetime import date
from pathlib import Path


def measure(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    exe = shutil.which("cifarctl")
    cases = {
        "cifarctl --help": [exe, "--help"] if exe else None,
        "cifarctl --version": [exe, "--version"] if exe else None,
        "python -m cifarctl --help": [sys.executable, "-m", "cifarctl", "--help"],
        "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
    }
    results = {}
    lines = [f"| command | median s | min s | max s |  ({args.runs} runs)", "|---|---:|---:|---:|"]
    print("\n".join(lines))
    for label, argv in cases.items():
        if argv is None:
            continue
        measure(argv, 2)  # warm the page cache
        t = measure(argv, args.runs)
        results[label] = {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs": args.runs}
        lines.append(f"| `{label}` | {statistics.median(t):.3f} | {min(t):.3f} | {max(t):.3f} |")
        print(lines[-1])
    if args.json:
        meta = {
            "date": date.today().isoformat(),
            "machine": platform.node(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
        head = (f"Start-up, {meta['platform']} ({meta['cpu_count']} CPUs, Python {meta['python']}), "
                f"{meta['date']}; load average after {os.getloadavg()[0]:.1f}")
        Path(args.json).with_suffix(".md").write_text(head + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
