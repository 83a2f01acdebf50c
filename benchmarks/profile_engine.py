"""Where a training step's time goes: batch assembly + augmentation, forward, backward, optimizer.

Usage:
  python benchmarks/profile_engine.py --data ../shared/data/cifar10-jpeg.tar.xz \
      [--recipes s8_bn s10_resnet_custom] [--steps 20] [--subset 2048] [--device cpu|cuda] [--json OUT]

For each recipe it builds the real engine (`cifarctl.training.prepare.prepare`: device-resident data,
the recipe's compiled augmentation, model, optimizer, precision) and times the phases of
`--steps` training steps separately (synchronising the device between phases, so the
split is exact but the total is a little slower than the engine's overlapped loop). Then
it runs the same steps under `torch.profiler` and lists the operators with the most self
time. The JSON and a markdown table go next to the other results.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def profile_recipe(name: str, data: str, device: str, steps: int, subset: int | None, top: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from cifarctl.training.prepare import prepare
    from cifarctl.recipe.load import load_recipe

    sets = ["data.workers=0"]
    if subset:
        sets += [f"data.train_subset={subset}", "data.test_subset=256"]
    recipe = load_recipe(name, sets)
    if getattr(recipe.scheduler, "max_lr", None) == "auto":
        recipe = load_recipe(name, sets + ["scheduler.max_lr=0.01"])  # the lr does not change the time
    t = prepare(recipe, data_source=data, device=device)
    dev = t.device
    phases = {"batch+augment": 0.0, "forward+loss": 0.0, "backward": 0.0, "optimizer": 0.0}

    def one_step(timed: bool, it) -> None:
        t0 = time.perf_counter()
        x, y = next(it)
        if timed:
            _sync(dev)
        t1 = time.perf_counter()
        with t.autocast():
            out = t.model(x)
            loss = t.loss_fn(out, y)
        if timed:
            _sync(dev)
        t2 = time.perf_counter()
        t.optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        if timed:
            _sync(dev)
        t3 = time.perf_counter()
        t.scaler.step(t.optimizer)
        t.scaler.update()
        if t.sched_per_batch:
            t.scheduler.step()
        if timed:
            _sync(dev)
        t4 = time.perf_counter()
        if timed:
            for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[k] += v

    def batches():
        while True:
            yield from t.batches.plan().iterate()

    t.model.train()
    it = batches()
    for _ in range(3):  # warm-up (cudnn autotuning, allocator)
        one_step(False, it)
    for _ in range(steps):
        one_step(True, it)
    total = sum(phases.values())
    bs = recipe.data.batch_size

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(min(steps, 10)):
            one_step(False, it)
        _sync(dev)
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    rows = []
    for e in sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:top]:
        rows.append({"op": e.key, "calls": e.count, "self_ms": getattr(e, key, 0) / 1000.0})
    return {
        "recipe": name, "model": recipe.model, "batch_size": bs, "steps": steps,
        "images_per_s": steps * bs / total if total else None,
        "phase_seconds": phases,
        "phase_share": {k: (v / total if total else None) for k, v in phases.items()},
        "top_ops": rows, "profiled_by": key,
    }


def to_markdown(res: dict) -> str:
    lines = [f"# Where the step time goes ({res['device_name']}, {res['data']}, {res['date']})", "",
             f"torch {res['torch']}, {res['machine']}. Phases timed with a device sync between "
             "them; top operators by self time from torch.profiler.", "",
             "| recipe | batch | img/s | batch+augment | forward+loss | backward | optimizer |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["results"]:
        s = r["phase_share"]
        lines.append(f"| {r['recipe']} | {r['batch_size']} | {r['images_per_s']:,.0f} | "
                     + " | ".join(f"{100 * s[k]:.1f} %" for k in ("batch+augment", "forward+loss",
                                                                     "backward", "optimizer")) + " |")
    for r in res["results"]:
        lines += ["", f"## {r['recipe']}: top operators ({r['profiled_by']})", "",
                  "| operator | calls | self ms |", "|---|---:|---:|"]
        lines += [f"| `{o['op']}` | {o['calls']} | {o['self_ms']:.1f} |" for o in r["top_ops"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--recipes", nargs="+", default=["s8_bn", "s9_dilated", "s10_resnet_custom"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--subset", type=int, default=None, help="train images to load (CPU: e.g. 2048)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    import torch

    results = []
    for name in a.recipes:
        print(f"profiling {name} ...", file=sys.stderr, flush=True)
        results.append(profile_recipe(name, a.data, a.device, a.steps, a.subset, a.top))
    dev = "cuda" if (a.device == "auto" and torch.cuda.is_available()) or a.device.startswith("cuda") else "cpu"
    res = {
        "benchmark": "profile_engine", "date": date.today().isoformat(), "torch": torch.__version__,
        "machine": f"{platform.node()} ({platform.machine()}, {torch.get_num_threads()} threads)",
        "device": dev, "device_name": torch.cuda.get_device_name(0) if dev == "cuda" else "CPU",
        "data": Path(a.data).name, "results": results,
    }
    md = to_markdown(res)
    print(md)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2) + "\n")
        a.json.with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
