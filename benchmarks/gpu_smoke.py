"""Correctness smoke test of the GPU path: what precision a GPU gets, fp16 and bf16 training,
and the fused optimizers over a GradScaler overflow step, on the device itself.

Each check appends one line to ``--md`` as soon as it is done (a time-boxed call keeps
what finished). Exit status 1 when a check fails.

Usage:
  python benchmarks/gpu_smoke.py --device cuda --md OUT/smoke.md [--steps 100] [--test-images 1000]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def say(md: Path | None, line: str) -> None:
    print(line, flush=True)
    if md is not None:
        with md.open("a") as f:
            f.write(line + "\n")


def device_line(dev) -> str:
    import torch

    from cifarctl.training.builders import precision_for

    auto, note = precision_for("auto", dev)
    if dev.type != "cuda":
        return f"- device {dev}: precision auto -> {auto or 'fp32'}"
    name = torch.cuda.get_device_name(dev)
    cap = ".".join(map(str, torch.cuda.get_device_capability(dev)))
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    return (f"- device {name} (sm {cap}), bf16 in hardware: {native}; precision auto -> "
            f"{str(auto).replace('torch.', '')}{f' ({note})' if note else ''}")


def overflow_check(dev, opt_name: str) -> str:
    """A GradScaler step with an inf gradient, then a normal one: fused vs unfused."""
    import torch

    from cifarctl.recipe.load import load_recipe
    from cifarctl.training.builders import build_optimizer

    opt = "{name: sgd, lr: 0.1, momentum: 0.9}" if opt_name == "sgd" else f"{{name: {opt_name}, lr: 0.1}}"
    recipe = load_recipe("s8_bn", [f"optimizer={opt}"])
    got = []
    for fused in (True, False):
        model = torch.nn.Linear(64, 1, bias=False).to(dev)
        torch.nn.init.ones_(model.weight)
        o = build_optimizer(model, recipe)
        if not fused:
            kw = {k: v for k, v in o.defaults.items() if k not in ("fused", "foreach", "decoupled_weight_decay")}
            o = type(o)(model.parameters(), **kw, foreach=False)
        scaler = torch.amp.GradScaler(dev.type)
        for g in (float("inf"), 1.0):
            o.zero_grad()
            scaler.scale((model.weight * g).sum()).backward()
            scaler.step(o)
            scaler.update()
        got.append(model.weight.detach().float().cpu())
    ok = bool(torch.isfinite(got[0]).all()) and torch.allclose(got[0], got[1], rtol=1e-5, atol=1e-6)
    return f"- fused {opt_name} over an overflow step equals unfused: {'ok' if ok else 'FAILED'}"


def train_check(dev, precision: str, steps: int, test_images: int) -> tuple[str, bool]:
    import torch

    from cifarctl.checkpoints import load_checkpoint
    from cifarctl.training.run import run_training

    batch = 64
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        s = run_training("s8_bn", overrides=[f"data.source=synthetic:{steps * batch}:{test_images}", f"data.batch_size={batch}",
                                             "epochs=2", f"precision={precision}"],
                         runs_dir=tmp, device=str(dev), view=None)
        secs = time.perf_counter() - t0
        ckpt = load_checkpoint(Path(s["run_dir"]) / "checkpoints" / "last.pt")
        finite = all(bool(torch.isfinite(v).all()) for v in ckpt["model"].values() if v.is_floating_point())
        bufs = [v.get("momentum_buffer") for v in ckpt["optimizer"]["state"].values()]
        finite = finite and all(b is None or bool(torch.isfinite(b).all()) for b in bufs)
        scale = (ckpt.get("scaler") or {}).get("scale")
        loss = s.get("final", {}).get("train_loss", ckpt["history"][-1]["train_loss"])
        ok = s["status"] == "completed" and finite and math.isfinite(loss)
        return (f"- s8_bn precision {precision}: {s['status']}, {2 * steps} steps in {secs:.1f} s, train loss "
                f"{loss:.3f}, weights and momentum finite: {finite}"
                f"{'' if scale is None else f', GradScaler scale {scale:g}'}: {'ok' if ok else 'FAILED'}"), ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=100, help="steps per epoch of each training check")
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()

    from cifarctl.training.builders import resolve_device

    dev = resolve_device(args.device)
    say(args.md, device_line(dev))
    failed = False
    for opt_name in ("sgd", "adamw"):
        line = overflow_check(dev, opt_name)
        failed |= line.endswith("FAILED")
        say(args.md, line)
    for precision in ("fp16", "bf16"):
        line, ok = train_check(dev, precision, args.steps, args.test_images)
        failed |= not ok
        say(args.md, line)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
