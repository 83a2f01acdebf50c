"""Augmentation throughput: batched DeviceAugment against albumentations per image.

Both run the same recipe steps on the same synthetic uint8 CIFAR-sized images (augmentation
cost does not depend on content) and end with the same normalized float32 batch:

* device: the data set as uint8 NCHW on --device, batches indexed from a permutation and
  augmented by ``cifarctl.augment.device.compile_steps(...)`` (the engine's path). On the CPU one
  row per --device-threads: DeviceAugment runs with 1 intra-op thread by default (robust
  when the machine is busy), torch's count is faster on an idle machine;
* albumentations: ``AlbumentationsDataset`` in a DataLoader (batch collation included) with
  0 workers and with --workers workers (persistent, started before timing).

The paths run interleaved, --repeat epochs each; the best epoch is reported (and the
median): other work on a shared machine slows whichever path it happens to overlap.

Steps: s10 = PadIfNeeded 40 (reflect_101) + RandomCrop 32 + HorizontalFlip + CoarseDropout 8x8
mean + Normalize; s9 = HorizontalFlip + Affine (shift 0.1, scale 0.9-1.1, rotate 15, mean fill)
+ CoarseDropout 16x16 mean + Normalize (the bundled recipes' lists).

Usage:
  python benchmarks/bench_augment.py [--n 20000] [--batch 512] [--device cpu|cuda]
      [--steps s10|s9 ...] [--workers N] [--repeat 3] [--json OUT]
Goal on the 2-core development machine: device >= 10x the best albumentations setting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

STEPS = {
    "s10": [
        {"PadIfNeeded": {"min_height": 40, "min_width": 40, "border_mode": 4}},
        {"RandomCrop": {"height": 32, "width": 32}},
        {"HorizontalFlip": {"p": 0.5}},
        {"CoarseDropout": {"num_holes_range": [1, 1], "hole_height_range": [8, 8],
                           "hole_width_range": [8, 8], "fill": "mean", "p": 0.5}},
    ],
    "s9": [
        {"HorizontalFlip": {"p": 0.5}},
        {"Affine": {"translate_percent": [-0.1, 0.1], "scale": [0.9, 1.1], "rotate": [-15, 15],
                    "border_mode": 0, "fill": "mean", "p": 0.5}},
        {"CoarseDropout": {"num_holes_range": [1, 1], "hole_height_range": [16, 16],
                           "hole_width_range": [16, 16], "fill": "mean", "p": 0.5}},
    ],
}


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_epoch(steps, images, batch: int, device, cpu_threads: int | None = None):
    """A function timing one epoch of index + DeviceAugment over the whole data set."""
    import torch

    from cifarctl.augment.device import compile_steps

    aug = compile_steps(steps, None, device, cpu_threads=cpu_threads)
    assert aug is not None, "every benchmark step has a device version"
    data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    g = torch.Generator(device=device).manual_seed(0)
    n = len(data)
    aug(data[:batch], g)  # warm-up (CUDA context, allocator)

    def epoch() -> float:
        sync(device)
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g, device=device)
        for s in range(0, n, batch):
            out = aug(data, g, index=perm[s:s + batch])  # = aug(data[perm[...]], g)
        sync(device)
        assert out.dtype == torch.float32
        return time.perf_counter() - t0
    return epoch


def albumentations_epoch(steps, images, batch: int, workers: int):
    """A function timing one epoch of a DataLoader over AlbumentationsDataset."""
    import numpy as np

    from cifarctl.augment.per_image import make_albumentations_loader

    loader = make_albumentations_loader(images, np.zeros(len(images), dtype=np.int64), steps, None,
                                        batch_size=batch, workers=workers, seed=0)
    if workers:
        next(iter(loader))  # start the (persistent) workers outside the timing

    def epoch() -> float:
        t0 = time.perf_counter()
        for _ in loader:
            pass
        return time.perf_counter() - t0
    return epoch


def machine(device) -> dict:
    import albumentations
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    if device.type == "cpu" and Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "albumentations": albumentations.__version__, "device": str(device), "device_name": name,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "date": date.today().isoformat(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="images per epoch")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the DeviceAugment side)")
    ap.add_argument("--steps", nargs="+", default=["s10", "s9"], choices=sorted(STEPS))
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                    help="DataLoader workers of the second albumentations row")
    ap.add_argument("--repeat", type=int, default=3, help="epochs per measurement (best is reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--device-threads", type=int, nargs="+", default=None,
                    help="CPU threads of DeviceAugment, one row each (default: 1, which the "
                         "engine uses, and torch's thread count)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device_threads is None:
        args.device_threads = sorted({1, torch.get_num_threads()})
    device = torch.device(args.device)
    images = np.random.default_rng(0).integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
    info = machine(device)
    rows = []
    for name in args.steps:
        steps = STEPS[name]
        epochs = {}
        if device.type == "cpu":
            for n in args.device_threads:
                epochs[f"device (cpu, batched, {n} thread{'s' if n > 1 else ''})"] = device_epoch(
                    steps, images, args.batch, device, n)
        else:
            epochs[f"device ({device.type}, batched)"] = device_epoch(steps, images, args.batch, device)
        epochs |= {
            "albumentations, 0 workers": albumentations_epoch(steps, images, args.batch, 0),
            f"albumentations, {args.workers} workers": albumentations_epoch(
                steps, images, args.batch, args.workers),
        }
        runs = {path: [] for path in epochs}
        for _ in range(args.repeat):  # interleaved, so a noisy moment hits every path alike
            for path, epoch in epochs.items():
                runs[path].append(epoch())
        best_alb = max(args.n / min(t) for k, t in runs.items() if k.startswith("albumentations"))
        for path, times in runs.items():
            ips = args.n / min(times)
            rows.append({"steps": name, "path": path, "images_per_s": round(ips),
                         "median_images_per_s": round(args.n / statistics.median(times)),
                         "seconds": [round(t, 4) for t in times],
                         "vs_best_albumentations": round(ips / best_alb, 2)})
            print(f"{name:4} {path:32} {ips:10.0f} img/s", file=sys.stderr, flush=True)

    lines = [f"Augmentation throughput, {args.n} images, batch {args.batch}, "
             f"{info['device_name']} ({info['cpu_count']} CPUs, torch {info['torch']}, "
             f"{info['torch_threads']} threads; load average before "
             f"{', '.join(f'{v:.1f}' for v in info['load_average'] or ())})", "",
             "| steps | path | img/s (best) | img/s (median) | vs best albumentations |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {r['steps']} | {r['path']} | {r['images_per_s']:,} | {r['median_images_per_s']:,} "
              f"| {r['vs_best_albumentations']:.1f}x |" for r in rows]
    md = "\n".join(lines) + "\n"
    print("\n" + md, end="")
    if args.json:
        out = {"benchmark": "augment", "machine": info, "config": {k: v for k, v in vars(args).items()
                                                                     if k != "json"},
               "steps": {k: STEPS[k] for k in args.steps}, "results": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        Path(args.json).with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
