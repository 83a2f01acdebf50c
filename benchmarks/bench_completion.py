"""Time of one shell-completion TAB, through the real protocol (median of N runs).

Each TAB runs ``cifarctl`` with ``_CIFARCTL_COMPLETE=complete_bash COMP_WORDS=...
COMP_CWORD=...``, as the script of ``cifarctl --install-completion`` does, in a scratch
folder holding a ``runs/`` of empty run folders. Reports wall and CPU (user + sys) time
per case, the interpreter's own start-up for scale, and checks that torch was not imported.

Usage: python benchmarks/bench_completion.py [--runs 15] [--exe PATH] [--json OUT]
``--exe`` defaults to the ``cifarctl`` script beside this Python (not a pyenv shim, which
adds its own start-up); without one, ``python -c`` runs the same entry point.
Goal: at most 0.3 s per TAB on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

CASES = [  # (label, COMP_WORDS, COMP_CWORD, a value the answer must hold)
    ("train s8<TAB>", "cifarctl train s8", 2, "s8_bn"),
    ("summary res<TAB>", "cifarctl summary res", 2, "resnet_custom"),
    ("train --device <TAB>", "cifarctl train --device ", 3, "cpu"),
    ("eval <TAB>", "cifarctl eval ", 2, "runs/s8_bn-1"),
    ("train --resume ru<TAB>", "cifarctl train --resume ru", 3, "runs/s8_bn-1"),
    ("tr<TAB> (a command)", "cifarctl tr", 1, "train"),
]

# Prints the completion, then whether torch got imported, on stderr.
ENTRY = ("import sys, atexit\n"
         "atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr))\n"
         "sys.argv[0] = 'cifarctl'\n"
         "from cifarctl.cli import main\n"
         "main()\n")


def command(exe: str | None) -> list[str]:
    return [exe] if exe else [sys.executable, "-c", ENTRY]


def one(argv: list[str], env: dict, cwd: Path) -> tuple[float, float, str, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.stdout, p.stderr


def scratch() -> Path:
    d = Path(tempfile.mkdtemp(prefix="cifarctl-complete-"))
    for name, mark in (("s8_bn-1", "checkpoints/last.pt"), ("s8_gn-2", "metrics.jsonl"), ("s9-3", "summary.json")):
        f = d / "runs" / name / mark
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--exe", help="the cifarctl console script to run (default: beside this Python)")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    exe = args.exe
    if exe is None:
        beside = Path(sys.executable).with_name("cifarctl")
        exe = str(beside) if beside.is_file() else None
    where = scratch()
    results = {}
    lines = [f"| TAB | wall median s | wall max s | CPU median s |  ({args.runs} runs, {exe or 'python -c'})",
             "|---|---:|---:|---:|"]
    print("\n".join(lines))
    try:
        floor = [one([sys.executable, "-c", "pass"], dict(os.environ), where) for _ in range(args.runs)]
        for label, words, cword, expect in CASES:
            env = dict(os.environ, _CIFARCTL_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
            argv = command(exe)
            _, _, out, err = one(argv, env, where)  # warm the page cache; check the answer
            if expect not in out.split():
                sys.exit(f"{label}: expected {expect!r} among the completions, got {out.split()} {err[-500:]}")
            if exe is None and "NO-TORCH" not in err:
                sys.exit(f"{label}: torch was imported")
            t = [one(argv, env, where) for _ in range(args.runs)]
            wall, cpu = [x[0] for x in t], [x[1] for x in t]
            results[label] = {"wall_median_s": statistics.median(wall), "wall_max_s": max(wall),
                              "cpu_median_s": statistics.median(cpu), "runs": args.runs}
            lines.append(f"| `{label}` | {statistics.median(wall):.3f} | {max(wall):.3f} | "
                         f"{statistics.median(cpu):.3f} |")
            print(lines[-1])
        results["python -c pass"] = {"wall_median_s": statistics.median(x[0] for x in floor),
                                     "cpu_median_s": statistics.median(x[1] for x in floor)}
        lines.append(f"| `python -c pass` (interpreter floor) | {results['python -c pass']['wall_median_s']:.3f} "
                     f"| | {results['python -c pass']['cpu_median_s']:.3f} |")
        print(lines[-1])
    finally:
        shutil.rmtree(where, ignore_errors=True)
    if args.json:
        meta = {"date": date.today().isoformat(), "platform": platform.platform(),
                "python": platform.python_version(), "cpu_count": os.cpu_count(),
                "load_average": os.getloadavg()[0], "exe": exe}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
        head = (f"Completion, {meta['platform']} ({meta['cpu_count']} CPUs, Python {meta['python']}), "
                f"{meta['date']}; load average after {meta['load_average']:.1f}")
        Path(args.json).with_suffix(".md").write_text(head + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
