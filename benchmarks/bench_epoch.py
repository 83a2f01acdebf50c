"""Epoch time per recipe: the cifarctl engine against a seed-style training loop.

The baseline is what the course notebooks do: a torchvision-style Dataset returning
albumentations-augmented images, a DataLoader with workers, fp32, NCHW, the same model,
batch size, optimizer and loss. cifarctl runs `cifarctl train` on the same images and
reports its own per-epoch time (the second epoch, so start-up and cudnn autotuning are
not counted; with one epoch, the first). Both are measured in one run, on one machine.

Usage:
  python benchmarks/bench_epoch.py --data ../shared/data/cifar10-jpeg.tar.xz \
      [--recipes s8_bn s10_resnet_custom] [--subset 2000] [--device cpu|cuda] [--workers 2] [--json OUT]

On the CPU use a subset (--subset); on the GPU whole epochs (no --subset).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def baseline_epoch(recipe, arrays, device: str, workers: int) -> tuple[float, int]:
    """One seed-style epoch: albumentations per image in DataLoader workers, fp32, NCHW."""
    import torch
    from torch.utils.data import DataLoader

    from cifarctl.augment.per_image import AlbumentationsDataset, build_albumentations
    from cifarctl.registry import create_model

    compose = build_albumentations(recipe.data.augment, recipe.data.normalize)
    ds = AlbumentationsDataset(arrays.train_x, arrays.train_y, compose)
    loader = DataLoader(ds, batch_size=recipe.data.batch_size, shuffle=True, num_workers=workers,
                        pin_memory=device.startswith("cuda"), drop_last=False,
                        persistent_workers=False)
    model = create_model(recipe.model, **recipe.model_args).to(device)
    opt_cfg = recipe.optimizer
    if opt_cfg.name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=opt_cfg.lr, momentum=opt_cfg.momentum,
                              weight_decay=opt_cfg.weight_decay)
    else:
        cls = torch.optim.Adam if opt_cfg.name == "adam" else torch.optim.AdamW
        opt = cls(model.parameters(), lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    n = 0
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for x, y in loader:  # the notebook loop, with its per-step .item() for the tqdm bar
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        opt.step()
        _ = loss.item()
        n += len(y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, n


def cifarctl_epoch(recipe_name: str, data: str, device: str, subset: int | None) -> tuple[float, int, float]:
    """Seconds and images of cifarctl's last epoch (2 epochs, so the first warms up)."""
    runs = Path(tempfile.mkdtemp(prefix="cifarctl-bench-"))
    cmd = [sys.executable, "-m", "cifarctl", "train", recipe_name, "--data", data, "--device", device,
           "--runs-dir", str(runs), "--set", "epochs=2", "--set", "scheduler={name: none}"]
    if subset:
        cmd += ["--set", f"data.train_subset={subset}", "--set", "data.test_subset=100"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cifarctl train failed:\n{proc.stderr[-2000:]}")
    (metrics,) = runs.glob("*/metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    last = rows[-1]
    images = round(last["images_per_s"] * last.get("train_seconds", last["seconds"]))
    return last.get("train_seconds", last["seconds"]), images, last["images_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", default=["s8_bn", "s9_dilated", "s10_resnet_custom"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--subset", type=int, default=None, help="train images per epoch (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json")
    args = ap.parse_args()

    import torch

    from cifarctl.data import load_cifar
    from cifarctl.recipe.load import load_recipe

    arrays = load_cifar(args.data, train_subset=args.subset, test_subset=100, progress=False)
    results = []
    lines = ["| recipe | baseline img/s | cifarctl img/s | speed-up |", "|---|---:|---:|---:|"]
    print("\n".join(lines))
    for name in args.recipes:
        recipe = load_recipe(name, ["scheduler={name: none}"])
        secs, n = baseline_epoch(recipe, arrays, args.device, args.workers)
        c_secs, c_n, c_ips = cifarctl_epoch(name, args.data, args.device, args.subset)
        b_ips = n / secs
        row = {"recipe": name, "baseline_s": secs, "baseline_images": n, "baseline_img_s": b_ips,
               "cifarctl_s": c_secs, "cifarctl_img_s": c_ips, "speedup": c_ips / b_ips}
        results.append(row)
        lines.append(f"| {name} | {b_ips:,.0f} | {c_ips:,.0f} | {c_ips / b_ips:.1f}x |")
        print(lines[-1], flush=True)
    meta = {"date": date.today().isoformat(), "machine": platform.node(), "device": args.device,
            "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "data": args.data,
            "subset": args.subset, "workers": args.workers}
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        head = (f"Epoch time, {meta['device_name'] or meta['device']} ({meta['device']}, "
                f"{meta['cpu_count']} CPUs, torch {meta['torch']}), data {meta['data']}, "
                f"{meta['subset'] or 'all'} train images, baseline with {meta['workers']} "
                f"DataLoader workers, {meta['date']}")
        Path(args.json).with_suffix(".md").write_text(head + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
