"""ATen operations dispatched per training step: what a GPU launches (and the host pays
~5 us for each, whatever the GPU), counted on any device.

A ``TorchDispatchMode`` counts every aten op below autograd while ``train_epochs`` runs
one epoch of 10 steps and one of 50 (synthetic data, off a terminal, eager); the
difference over 40 is the per-step count (the epoch's set-up and its evaluation cancel
out). The most frequent ops are listed.

Usage:
  python benchmarks/bench_ops.py [--device cpu] [--recipes s8_bn s9_dilated speedrun] \\
      [--batch 64] [--md OUT] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

RECIPES = ("s8_bn", "s9_dilated", "speedrun")


def ops_in_training(recipe: str, steps: int, batch: int, device: str, extra: tuple = ()) -> collections.Counter:
    """aten ops (by name) dispatched while one epoch of ``steps`` steps trains."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from cifarctl.training import engine
    from cifarctl.training.run import run_training

    seen: collections.Counter = collections.Counter()

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    real = engine.train_epochs

    def counted(t):
        with Count():
            yield from real(t)

    engine.train_epochs = counted
    try:
        with tempfile.TemporaryDirectory() as tmp:
            s = run_training(recipe, overrides=[f"data.source=synthetic:{steps * batch}:16", f"data.batch_size={batch}",
                                                "data.test_batch_size=16", "epochs=1", "compile=false", *extra],
                             runs_dir=tmp, device=device, view=None)
    finally:
        engine.train_epochs = real
    assert s["status"] == "completed" and s["steps"] == steps, s
    return seen


def ops_per_step(recipe: str, batch: int = 64, device: str = "cpu", extra: tuple = ()) -> tuple[float, dict]:
    """(aten ops per step, per-step count of each op), from 10 vs 50 steps."""
    few, many = (ops_in_training(recipe, n, batch, device, extra) for n in (10, 50))
    per_op = {k: (many[k] - few[k]) / 40 for k in many.keys() | few.keys() if many[k] != few[k]}
    return (sum(many.values()) - sum(few.values())) / 40, dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="recipe override for every recipe (the count does not depend on widths or batch)")
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.md:
        args.md.write_text(f"# aten ops per training step ({args.device}, batch {args.batch}, eager)\n\n"
                           "| recipe | ops per step | most frequent |\n|---|---:|---|\n")
    result = {}
    for r in args.recipes:
        n, per_op = ops_per_step(r, args.batch, args.device, tuple(args.set))
        result[r] = {"ops_per_step": n, "per_op": per_op}
        top = ", ".join(f"{k} {v:g}" for k, v in list(per_op.items())[:args.top])
        line = f"| {r} | {n:g} | {top} |"
        print(line, flush=True)
        if args.md:
            with args.md.open("a") as f:
                f.write(line + "\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
