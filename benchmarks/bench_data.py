"""Data loading: the first decode of a source against a reload of its decoded-array cache.

Usage: python benchmarks/bench_data.py --data ../shared/data/cifar10-jpeg.tar.xz [--reloads 5] [--json OUT]
Goal: a cache reload in about 1 s (the first decode of the JPEG copy takes ~26 s on the
2-core development machine). Each measurement is a fresh Python process calling
``cifarctl.data.load_cifar`` with an empty (first) or filled (reloads) cache folder; the
time is of the call itself, not of the interpreter start.
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
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys, time
sys.path.insert(0, sys.argv[3])
from cifarctl.data import load_cifar
t0 = time.perf_counter()
d = load_cifar(sys.argv[1], cache_dir=sys.argv[2], progress=False)
print(time.perf_counter() - t0, len(d.train_y), len(d.test_y))
"""


def timed_load(data: str, cache_dir: str) -> tuple[float, int, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, data, cache_dir, str(ROOT)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a data source (path), as for `cifarctl data`")
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--json", help="write results here (and a .md beside it)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cifarctl-bench-cache-") as cache_dir:
        first, n_train, n_test = timed_load(args.data, cache_dir)
        print(f"first load (decode + write cache): {first:.2f} s", file=sys.stderr, flush=True)
        reloads = [timed_load(args.data, cache_dir)[0] for _ in range(args.reloads)]
        cache_bytes = sum(p.stat().st_size for p in Path(cache_dir).rglob("*") if p.is_file())
    meta = {"date": date.today().isoformat(), "machine": platform.node(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "data": args.data,
            "images": {"train": n_train, "test": n_test}, "cache_bytes": cache_bytes,
            "load_average_after": os.getloadavg()}
    results = {"first_load_s": first, "reload_median_s": statistics.median(reloads),
               "reload_min_s": min(reloads), "reload_max_s": max(reloads), "reloads_s": reloads}
    lines = [f"Data loading, {meta['data']} ({n_train} train / {n_test} test images, cache "
             f"{cache_bytes / 2**20:.0f} MiB), {meta['cpu_count']} CPUs, {meta['date']}", "",
             "| step | seconds |", "|---|---:|",
             f"| first load: decode + write the cache | {first:.2f} |",
             f"| reload from the cache (median of {len(reloads)}) | {results['reload_median_s']:.2f} |",
             f"| reload, min / max | {min(reloads):.2f} / {max(reloads):.2f} |"]
    md = "\n".join(lines) + "\n"
    print(md, end="")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        Path(args.json).with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
