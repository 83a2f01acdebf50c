"""The cost of an epoch boundary, and host reads per training step.

The same training steps run as 1 epoch and as N epochs (N x fewer images each, the same
test split, by default the real 10,000 images at the recipe's test_batch_size): the
difference in wall time, over N - 1, is what one epoch boundary costs the loop (test
evaluation, metrics, checkpoints, curves, summary, as the run layer does them). Both arms
do the same work but for the boundaries: an untimed warm-up pair runs first (on CUDA:
cuDNN autotuning and lazy module loading), and both arms draw curves.png twice (epoch 1
in the writer, the end in the main thread; a 1-epoch run would otherwise skip the final
redraw). Each arm is timed from the engine's "start" event to the end of ``run_training``;
the median over ``--repeat`` (>= 5) pairs of (N-epoch - 1-epoch) / (N - 1) is reported.

Host reads per step are counted as in tests/test_gpu_path.py (10 vs 50 steps), on CUDA also
the syncs that ``torch.cuda.set_sync_debug_mode`` reports, for the recipe as written, with
``precision: fp16`` (a GradScaler on CUDA; fp32 on the CPU) and per evaluation chunk with
``eval_tta: flip_translate``; and the dynamo compilations after epoch 1 of a
``compile: true`` run with a ragged train split.

``--part`` runs one of them (boundary, syncs, recompiles; default all). ``--vs DIR`` runs
the same measurement on another checkout of cifarctl (e.g. the previous commit) in a
subprocess, paired on the same machine, and checks that both give the same metrics.

Usage:
  python benchmarks/bench_epoch_overhead.py [--steps 40] [--epochs 20] [--batch 32] \\
      [--test-images 10000] [--recipe s8_bn] [--device cpu] [--repeat 5] [--part all] \\
      [--vs ../old-checkout] [--json OUT] [--md OUT]
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
         extra: tuple = (), test_images: int = 64) -> tuple[float, list, list]:
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

    s = run_training(recipe, overrides=[f"data.source=synthetic:{images}:{test_images}",
                                        f"data.batch_size={batch}", f"epochs={epochs}", *extra],
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


def _same_draws() -> None:
    """Both arms draw curves.png at the end (the 1-epoch run would skip it as current)."""
    from cifarctl.training import run

    real = run._CurvesPace.now

    def now(self, history):
        self.epochs = None
        real(self, history)

    run._CurvesPace.now = now


def measure(args) -> dict:
    import torch

    torch.set_num_threads(torch.get_num_threads())
    _same_draws()
    one, many = [], []
    metrics = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat + 1):  # pair 0 is the warm-up, not counted
            for label, epochs, bucket in (("one", 1, one), ("many", args.epochs, many)):
                images = args.steps * args.batch // epochs
                secs, rows, _ = _run(args.recipe, images, epochs, args.batch, args.device,
                                     Path(tmp) / f"{label}{i}", test_images=args.test_images)
                if i:
                    bucket.append(secs)
                metrics[label] = rows
            if i:  # progress, shown as it comes (a time-boxed call keeps it)
                print(f"# pair {i}: {1000 * (many[-1] - one[-1]) / (args.epochs - 1):.1f} ms per boundary", flush=True)
    pairs = [(m - o) / (args.epochs - 1) for o, m in zip(one, many)]
    return {"recipe": args.recipe, "device": args.device, "steps": args.steps, "batch": args.batch,
            "epochs": args.epochs, "test_images": args.test_images, "one_epoch_s": one, "n_epochs_s": many,
            "ms_per_epoch_boundary": round(1000 * statistics.median(pairs), 1),
            "ms_per_boundary_pairs": [round(1000 * p, 1) for p in pairs], "metrics": metrics}


class _Counting:
    """Host reads (a TorchFunctionMode) and, on CUDA, the syncs torch reports, in a block."""

    READS = None

    def __init__(self, cuda: bool):
        import torch
        from torch.overrides import TorchFunctionMode

        reads = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy,
                 torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__}
        box = self

        class Count(TorchFunctionMode):
            def __torch_function__(self, func, types, a=(), kw=None):
                if func in reads:
                    box.reads += 1
                return func(*a, **(kw or {}))

        self.mode, self.cuda, self.reads, self.syncs = Count(), cuda, 0, 0

    def __enter__(self):
        import warnings

        import torch

        self._warn = warnings.catch_warnings(record=True)
        self.caught = self._warn.__enter__()
        warnings.simplefilter("always")
        if self.cuda:
            torch.cuda.set_sync_debug_mode("warn")
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        import torch

        self.mode.__exit__(*exc)
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("default")
        self.syncs = sum("synchroniz" in str(w.message) for w in self.caught)
        self._warn.__exit__(*exc)


def host_reads(args, extra: tuple = ()) -> tuple[float, float | None]:
    """(host reads per step, CUDA syncs per step or None off CUDA): 10 steps vs 50 steps
    of one epoch, off a terminal, with the recipe overrides ``extra``."""
    from cifarctl.training import engine
    from cifarctl.training.run import run_training

    real = engine.train_epochs
    cuda = args.device.startswith("cuda")
    counted = []

    def counting(t):
        with _Counting(cuda) as c:
            yield from real(t)
        counted.append((c.reads, c.syncs))

    engine.train_epochs = counting
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for steps in args.sync_steps:
                run_training(args.recipe, overrides=[f"data.source=synthetic:{steps * 16}:48", "data.batch_size=16",
                                                     "data.test_batch_size=16", "epochs=1", *extra],
                             runs_dir=Path(tmp) / str(steps), device=args.device, view=None)
    finally:
        engine.train_epochs = real
    (r10, s10), (r50, s50) = counted
    d = args.sync_steps[1] - args.sync_steps[0]
    return (r50 - r10) / d, ((s50 - s10) / d if cuda else None)


def eval_reads(args, tta: str = "flip_translate") -> tuple[float, float | None]:
    """(host reads, CUDA syncs) per evaluation chunk under test-time augmentation ``tta``:
    an evaluation of 10 chunks vs one of 50, as every epoch's test evaluation runs it."""
    from cifarctl.recipe.load import load_recipe
    from cifarctl.training.evaluation import evaluate
    from cifarctl.training.prepare import prepare

    t = prepare(load_recipe(args.recipe, ["data.batch_size=16", f"eval_tta={tta}"]),
                data_source=f"synthetic:64:{16 * max(args.sync_steps)}", device=args.device)
    cuda = args.device.startswith("cuda")
    got = []
    for chunks in args.sync_steps:
        with _Counting(cuda) as c:
            evaluate(t.model, t.test_x[:16 * chunks], t.test_y[:16 * chunks], normalize=t.normalize,
                     batch_size=16 * 6, autocast=t.autocast, channels_last=t.channels_last, tta=tta)
        got.append((c.reads, c.syncs))
    (r10, s10), (r50, s50) = got
    d = args.sync_steps[1] - args.sync_steps[0]
    return (r50 - r10) / d, ((s50 - s10) / d if cuda else None)


SYNC_CASES = {"as written": (), "precision fp16": ("precision=fp16",)}


def syncs(args) -> dict:
    """Host reads and CUDA syncs per step (each case) and per TTA evaluation chunk."""
    out = {}
    for name, extra in SYNC_CASES.items():
        reads, cuda = host_reads(args, extra)
        out[name] = {"host_reads_per_step": reads, "cuda_syncs_per_step": cuda}
    reads, cuda = eval_reads(args)
    out["eval flip_translate, per chunk"] = {"host_reads_per_step": reads, "cuda_syncs_per_step": cuda}
    return out


PARTS = ("boundary", "syncs", "recompiles")


def only_measure(args) -> dict:
    parts = PARTS if args.part == "all" else (args.part,)
    out: dict = {"parts": list(parts)}
    if "syncs" in parts:
        out["syncs"] = syncs(args)
    if "boundary" in parts:
        out.update(measure(args))
    if "recompiles" in parts:
        out["recompiles_after_epoch_1"] = recompiles(args)
    return out


def _cell(v) -> str:
    return "n/a (CPU)" if v is None else f"{v:g}"


def render(args, result: dict) -> str:
    this = result["this"]
    rows = [("this", this)] + ([("--vs", result["vs"])] if args.vs else [])
    lines = [f"# Epoch-boundary cost and host reads per step ({args.recipe}, {args.device})", "",
             f"{result['machine']}."]
    if "ms_per_epoch_boundary" in this:
        lines += ["", f"{args.steps} steps of batch {args.batch} as 1 epoch and as {args.epochs} epochs, "
                      f"{args.test_images} synthetic test images at the recipe's test_batch_size; median of "
                      f"{args.repeat} pairs after a warm-up pair.", "",
                  "| checkout | ms per epoch boundary | pairs (ms) |", "|---|---:|---|"]
        lines += [f"| {k} | {r['ms_per_epoch_boundary']} | {', '.join(map(str, r['ms_per_boundary_pairs']))} |"
                  for k, r in rows]
    if "syncs" in this:
        lines += ["", "| checkout | case | host reads | CUDA syncs |", "|---|---|---:|---:|"]
        lines += [f"| {k} | {case} | {_cell(v['host_reads_per_step'])} | {_cell(v['cuda_syncs_per_step'])} |"
                  for k, r in rows for case, v in r["syncs"].items()]
        few, many = args.sync_steps
        lines += ["", f"Per training step ({few} vs {many} steps), and per evaluation chunk for the TTA case."]
    if "recompiles_after_epoch_1" in this:
        lines += ["", "| checkout | recompiles after epoch 1 |", "|---|---:|"]
        lines += [f"| {k} | {r['recompiles_after_epoch_1']} |" for k, r in rows]
    if args.vs:
        lines += ["", f"Same metrics (timings left out): {result['same_metrics']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="s8_bn")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--test-images", type=int, default=10_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=5, help="timed pairs (after one warm-up pair)")
    ap.add_argument("--part", choices=("all", *PARTS), default="all")
    ap.add_argument("--sync-steps", type=int, nargs=2, default=[10, 50], metavar=("FEW", "MANY"),
                    help="steps (and evaluation chunks) of the two runs whose difference is counted")
    ap.add_argument("--vs", help="another cifarctl checkout to measure the same way, paired")
    ap.add_argument("--json")
    ap.add_argument("--md")
    ap.add_argument("--only-measure", action="store_true", help=argparse.SUPPRESS)  # the --vs child
    args = ap.parse_args()
    if args.only_measure:
        print(json.dumps(only_measure(args)))
        return

    def child(root) -> dict:
        """The measurement in a subprocess on checkout ``root``; its progress lines are shown as they come."""
        env = {**os.environ, "PYTHONPATH": str(Path(root).resolve())}
        with subprocess.Popen([sys.executable, __file__, "--only-measure", *_passed(args)], stdout=subprocess.PIPE,
                              text=True, env=env) as proc:
            lines = []
            for line in proc.stdout:
                if line.startswith("# "):
                    print(line[2:], end="", flush=True)
                else:
                    lines.append(line)
        if proc.returncode:
            raise SystemExit(f"the measurement failed (exit {proc.returncode})")
        return json.loads(lines[-1])

    this = child(Path(__file__).resolve().parents[1])
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "this": this}
    if args.vs:
        other = child(args.vs)
        result["vs"] = {"checkout": str(args.vs), **other}
        result["same_metrics"] = other.get("metrics") == this.get("metrics")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    md = render(args, result)
    if args.md:
        Path(args.md).write_text(md)
    print(md)


def _passed(args) -> list[str]:
    return ["--recipe", args.recipe, "--steps", str(args.steps), "--epochs", str(args.epochs),
            "--batch", str(args.batch), "--device", args.device, "--repeat", str(args.repeat),
            "--test-images", str(args.test_images), "--part", args.part,
            "--sync-steps", *map(str, args.sync_steps)]


if __name__ == "__main__":
    main()
