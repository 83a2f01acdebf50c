"""The cost of an epoch boundary, and host reads per training step.

The same training steps run as 1 epoch and as N epochs (N x fewer images each, the same
small test split): the difference in wall time, over N - 1, is what one epoch boundary
costs the loop (test evaluation, metrics, checkpoints, curves, summary, as the run layer
does them). Each configuration is timed from the engine's "start" event to the end of
``run_training`` (data loading and model building left out), ``--repeat`` times; the
median is reported. Host reads per step are counted as in tests/test_gpu_path.py; on CUDA also the syncs that
``torch.cuda.set_sync_debug_mode`` reports; and the dynamo compilations after epoch 1 of a
``compile: true`` run with a ragged train split.

``--vs DIR`` runs the same measurement on another checkout of cifarctl (e.g. the previous
commit) in a subprocess, paired on the same machine, and checks that both give the same
metrics (timings left out).

Usage:
  python benchmarks/bench_epoch_overhead.py [--steps 40] [--epochs 20] [--batch 32] \\
      [--recipe s8_bn] [--device cpu] [--repeat 3] [--vs ../old-checkout] [--json OUT] [--md OUT]
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

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
TIMING = {"seconds", "train_seconds", "images_per_s"}


def _dynamo_count() -> int:
    from torch._dynamo.utils import counters

    return sum(counters["stats"].values()) + sum(counters["recompiles"].values())


def _run(recipe: str, images: int, epochs: int, batch: int, device: str, out: Path,
         extra: tuple = ()) -> tuple[float, list, list]:
    """(seconds from the start event to the end, metrics without timings, dynamo count at each epoch end)."""
    from cifarctl.training.run import run_training

    marks, compiled = {}, []

    class View:
        def handle(self, ev):
            if ev["type"] == "start":
                marks["start"] = time.perf_counter()
            elif ev["type"] == "epoch":
                compiled.append(_dynamo_count())

        def finish(self, summary):
            pass

    s = run_training(recipe, overrides=[f"data.source=synthetic:{images}:64", f"data.batch_size={batch}",
                                        "data.test_batch_size=64", f"epochs={epochs}", *extra],
                     runs_dir=out, device=device, view=View())
    seconds = time.perf_counter() - marks["start"]
    assert s["status"] == "completed", s
    rows = [json.loads(ln) for ln in (Path(s["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    return seconds, [{k: v for k, v in r.items() if k not in TIMING} for r in rows], compiled


def recompiles(args) -> int:
    """Dynamo compilations after epoch 1 of a 3-epoch run with ``compile: true`` (the
    inductor backend on CUDA; on the CPU the eager backend: same guards, no codegen)."""
    import torch

    if args.device == "cpu":
        real = torch.compile
        torch.compile = lambda model, **kw: real(model, backend="eager")
    torch._dynamo.reset()
    with tempfile.TemporaryDirectory() as tmp:
        _, _, compiled = _run(args.recipe, 3 * args.batch + args.batch // 2, 3, args.batch, args.device,
                              Path(tmp), ("compile=true",))
    return compiled[-1] - compiled[0]


def measure(args) -> dict:
    import torch

    torch.set_num_threads(torch.get_num_threads())
    one, many = [], []
    metrics = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for label, epochs, bucket in (("one", 1, one), ("many", args.epochs, many)):
                images = args.steps * args.batch // epochs
                secs, rows, _ = _run(args.recipe, images, epochs, args.batch, args.device, Path(tmp) / f"{label}{i}")
                bucket.append(secs)
                metrics[label] = rows
    boundary = (statistics.median(many) - statistics.median(one)) / (args.epochs - 1)
    return {"recipe": args.recipe, "device": args.device, "steps": args.steps, "batch": args.batch,
            "epochs": args.epochs, "one_epoch_s": one, "n_epochs_s": many,
            "ms_per_epoch_boundary": round(1000 * boundary, 1), "metrics": metrics}


def host_reads(args) -> tuple[float, float | None]:
    """(host reads per step, CUDA syncs per step or None off CUDA): 10 steps vs 50 steps
    of one epoch, off a terminal; CUDA syncs are torch.cuda.set_sync_debug_mode's warnings."""
    import warnings

    import torch
    from torch.overrides import TorchFunctionMode

    from cifarctl.training import engine
    from cifarctl.training.run import run_training

    reads = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy,
             torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__}

    class Count(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, a=(), kw=None):
            if func in reads:
                Count.n += 1
            return func(*a, **(kw or {}))

    real = engine.train_epochs

    def counted(t):
        with Count():
            yield from real(t)

    engine.train_epochs = counted
    cuda = args.device.startswith("cuda")
    counts, syncs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (10, 50):
            Count.n = 0
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if cuda:
                    torch.cuda.set_sync_debug_mode("warn")
                try:
                    run_training(args.recipe, overrides=[f"data.source=synthetic:{steps * 16}:48",
                                                         "data.batch_size=16", "data.test_batch_size=16", "epochs=1"],
                                 runs_dir=Path(tmp) / str(steps), device=args.device, view=None)
                finally:
                    if cuda:
                        torch.cuda.set_sync_debug_mode("default")
            counts.append(Count.n)
            syncs.append(sum("synchroniz" in str(w.message) for w in caught))
    engine.train_epochs = real
    return (counts[1] - counts[0]) / 40, ((syncs[1] - syncs[0]) / 40 if cuda else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="s8_bn")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--vs", help="another cifarctl checkout to measure the same way, paired")
    ap.add_argument("--json")
    ap.add_argument("--md")
    ap.add_argument("--only-measure", action="store_true", help=argparse.SUPPRESS)  # the --vs child
    args = ap.parse_args()
    if args.only_measure:
        reads, syncs = host_reads(args)
        print(json.dumps({**measure(args), "host_reads_per_step": reads, "cuda_syncs_per_step": syncs,
                          "recompiles_after_epoch_1": recompiles(args)}))
        return
    this = json.loads(subprocess.run([sys.executable, __file__, "--only-measure", *_passed(args)],
                                     check=True, capture_output=True, text=True,
                                     env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
                                     ).stdout.splitlines()[-1])
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "this": this}
    if args.vs:
        other = json.loads(subprocess.run([sys.executable, __file__, "--only-measure", *_passed(args)],
                                          check=True, capture_output=True, text=True,
                                          env={**os.environ, "PYTHONPATH": str(Path(args.vs).resolve())}
                                          ).stdout.splitlines()[-1])
        result["vs"] = {"checkout": str(args.vs), **other}
        result["same_metrics"] = other["metrics"] == this["metrics"]
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    lines = [f"# Epoch-boundary cost and host reads per step ({args.recipe}, {args.device})", "",
             f"{result['machine']}; {args.steps} steps of batch {args.batch} as 1 epoch and as {args.epochs} "
             f"epochs (64 synthetic test images), median of {args.repeat}.", "",
             "| checkout | ms per epoch boundary | host reads per step | CUDA syncs per step "
             "| recompiles after epoch 1 |", "|---|---:|---:|---:|---:|"]
    for label, r in [("this", this)] + ([("--vs", result["vs"])] if args.vs else []):
        lines.append(f"| {label} | {r['ms_per_epoch_boundary']} | {r['host_reads_per_step']:g} | "
                     f"{'n/a (CPU)' if r['cuda_syncs_per_step'] is None else r['cuda_syncs_per_step']} | "
                     f"{r['recompiles_after_epoch_1']} |")
    if args.vs:
        lines += ["", f"Same metrics (timings left out): {result['same_metrics']}"]
    md = "\n".join(lines) + "\n"
    if args.md:
        Path(args.md).write_text(md)
    print(md)


def _passed(args) -> list[str]:
    return ["--recipe", args.recipe, "--steps", str(args.steps), "--epochs", str(args.epochs),
            "--batch", str(args.batch), "--device", args.device, "--repeat", str(args.repeat)]


if __name__ == "__main__":
    main()
