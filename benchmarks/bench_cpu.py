"""CPU training-step speed: eager vs torch.compile, memory format, threads, bf16 autocast.

For each model (the recipe's model, model_args and batch size) one fresh process per
configuration times a training step (forward, loss, backward, SGD step) on a fixed batch:
a few warm-up steps, then --steps timed steps. A compiled configuration also reports its
compile time (the first training step, and the first evaluation forward, which compiles a
second graph) and after how many steps the compile pays for itself against eager. The
seed-style loop (albumentations per image in DataLoader workers, fp32, NCHW: the same
baseline as bench_epoch.py) is timed over the same number of steps on the real images, so
every configuration also gets its ratio to what the course notebooks do.

Run it on an otherwise idle machine: the numbers are wall-clock.

Usage:
  python benchmarks/bench_cpu.py --data ../shared/data/cifar10-jpeg.tar.xz \
      [--recipes s8_bn s6_dilated s9_dilated] [--steps 100] [--configs eager compile ...] \
      [--json benchmarks/results/cpu-speed-cpu.json]
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

# name -> (torch.compile?, channels_last?, threads or None = torch's default, bf16 autocast?)
CONFIGS = {
    "eager": (False, False, None, False),
    "eager_channels_last": (False, True, None, False),
    "eager_1_thread": (False, False, 1, False),
    "eager_bf16": (False, False, None, True),
    "compile": (True, False, None, False),
    "compile_channels_last": (True, True, None, False),
}


def _one(recipe_name: str, config: str, steps: int, warmup: int) -> dict:
    """Runs inside a fresh process: time one configuration of one recipe's model."""
    import torch

    from cifarctl.recipe.load import load_recipe
    from cifarctl.registry import create_model

    compiled, channels_last, threads, bf16 = CONFIGS[config]
    if threads:
        torch.set_num_threads(threads)
    recipe = load_recipe(recipe_name)
    torch.manual_seed(0)
    model = create_model(recipe.model, **recipe.model_args)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    fn = torch.compile(model) if compiled else model
    bs = recipe.data.batch_size
    x = torch.randn(bs, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (bs,))

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(fn(x), y)
        loss.backward()
        opt.step()
        return loss

    model.train()
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    per_step = (time.perf_counter() - t0) / steps
    finite = bool(torch.isfinite(loss).item())
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        fn(x)
    first_eval = time.perf_counter() - t0
    return {"recipe": recipe_name, "config": config, "batch": bs, "steps": steps, "threads": torch.get_num_threads(),
            "first_step_s": first, "first_eval_s": first_eval, "step_ms": per_step * 1000,
            "img_s": bs / per_step, "loss_finite": finite,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _baseline(recipe_name: str, data: str, steps: int, workers: int) -> dict:
    """The seed-style loop over steps x batch real images (bench_epoch's baseline)."""
    from bench_epoch import baseline_epoch

    from cifarctl.data import load_cifar
    from cifarctl.recipe.load import load_recipe

    recipe = load_recipe(recipe_name, ["scheduler={name: none}"])
    arrays = load_cifar(data, train_subset=steps * recipe.data.batch_size, test_subset=100, progress=False)
    secs, n = baseline_epoch(recipe, arrays, "cpu", workers)
    return {"recipe": recipe_name, "config": f"seed_loop_{workers}_workers", "batch": recipe.data.batch_size,
            "steps": n // recipe.data.batch_size, "step_ms": secs / (n / recipe.data.batch_size) * 1000,
            "img_s": n / secs}


def _spawn(args: list[str]) -> dict:
    # a fresh inductor cache per process, so every compile time is a cold compile
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="cifarctl-inductor-")}
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _procs() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command) for every process we can read."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")[0]
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[int(d.name)] = (ppid, cmd)
    return out


def _others() -> list[int]:
    """Python processes outside this benchmark's own tree (other jobs sharing the cores)."""
    procs = _procs()
    mine = {os.getpid()}
    grew = True
    while grew:  # descendants of this process
        grew = False
        for pid, (ppid, _) in procs.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                grew = True
    return [pid for pid, (_, cmd) in procs.items() if pid not in mine and b"python" in cmd]


class _Paused:
    """SIGSTOP every other python process while a recipe is measured (also ones started
    meanwhile: re-checked twice a second), SIGCONT them all afterwards."""

    def __init__(self, enabled: bool):
        import threading

        self.enabled, self.pids, self.done = enabled, set(), threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _stop_new(self):
        import signal

        for pid in _others():
            if pid not in self.pids:
                try:
                    os.kill(pid, signal.SIGSTOP)
                    self.pids.add(pid)
                except OSError:
                    pass

    def _loop(self):
        while not self.done.wait(0.5):
            self._stop_new()

    def __enter__(self):
        if self.enabled:
            self._stop_new()
            self.thread.start()
            time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        import signal

        self.done.set()
        if self.enabled:
            self.thread.join()
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass


def _markdown(rows: list[dict], meta: dict) -> str:
    head = (f"# CPU training-step speed ({meta['device_name']}, {meta['cpu_count']} CPUs, "
            f"torch {meta['torch']}, {meta['cpu_capability']}, {meta['date']})\n\n"
            "`steps` timed steps per row after warm-up, one fresh process per row, "
            "the recipe's batch size; `vs eager` compares with the eager row of the same recipe, "
            "`vs seed loop` with the seed-style loop (albumentations in DataLoader workers, fp32) "
            "on the real images. `compile s` = first training step + first evaluation forward "
            "(two graphs); `pays off after` = compile s / time saved per step.\n\n")
    out = ["| recipe | config | batch | steps | step ms | img/s | vs eager | vs seed loop | compile s | pays off after |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['recipe']} | {r['config']} | | | | | | | | failed: {r['error']} |")
            continue
        comp = r.get("compile_s")
        pay = r.get("pays_off_after_steps")
        ratio = {k: "—" if r.get(k) is None else f"{r[k]:.2f}x" for k in ("vs_eager", "vs_seed_loop")}
        out.append(f"| {r['recipe']} | {r['config']} | {r['batch']} | {r.get('steps', '?')} | {r['step_ms']:.1f} | {r['img_s']:,.0f} | "
                   f"{ratio['vs_eager']} | {ratio['vs_seed_loop']} | "
                   f"{'' if comp is None else f'{comp:.1f}'} | "
                   f"{'' if pay is None else ('never' if pay < 0 else f'{pay:,.0f} steps')} |")
    return head + "\n".join(out) + "\n"


def _measure(name: str, args, common: list[str]) -> tuple[list[dict], list[dict]]:
    base, mine = [], []
    if args.data:
        for w in args.workers:
            r = _spawn(["--data", args.data, "--child-baseline", name, str(w), *common])
            r.setdefault("recipe", name)
            r.setdefault("config", f"seed_loop_{w}_workers")
            base.append(r)
            print(json.dumps(r), flush=True)
    for config in args.configs:
        steps = common if config != "eager_bf16" else ["--steps", str(max(10, args.steps // 5)), *common[2:]]
        r = _spawn(["--child", name, config, *steps])
        r.setdefault("recipe", name)
        r.setdefault("config", config)
        mine.append(r)
        print(json.dumps(r), flush=True)
    return base, mine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", default=["s8_bn", "s6_dilated", "s9_dilated"])
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--data", help="data for the seed-style baseline (skipped without it)")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="*", default=[2], help="baseline DataLoader workers")
    ap.add_argument("--json", help="write JSON here and a markdown table beside it")
    ap.add_argument("--append", action="store_true",
                    help="keep the other recipes' rows already in --json (measure some recipes again)")
    ap.add_argument("--pause-others", action="store_true",
                    help="SIGSTOP other python processes while one recipe is measured (SIGCONT after): "
                         "a long background training run keeps its state, the numbers stay honest")
    ap.add_argument("--child", nargs=2, metavar=("RECIPE", "CONFIG"), help=argparse.SUPPRESS)
    ap.add_argument("--child-baseline", nargs=2, metavar=("RECIPE", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so paused jobs are resumed
    if args.child:
        print(json.dumps(_one(args.child[0], args.child[1], args.steps, args.warmup)))
        return
    if args.child_baseline:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        print(json.dumps(_baseline(args.child_baseline[0], args.data, args.steps, int(args.child_baseline[1]))))
        return

    import torch

    rows: list[dict] = []
    if args.append and args.json and Path(args.json).exists():
        rows = [r for r in json.loads(Path(args.json).read_text())["results"] if r["recipe"] not in args.recipes]
    meta = {"date": date.today().isoformat(), "machine": platform.node(), "device": "cpu",
            "device_name": platform.processor() or platform.machine(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "steps": args.steps, "warmup": args.warmup, "data": args.data}

    def flush():
        if args.json:
            Path(args.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
            Path(args.json).with_suffix(".md").write_text(_markdown(rows, meta))

    common = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    for name in args.recipes:
        with _Paused(args.pause_others):
            base, mine = _measure(name, args, common)
        eager = next((r for r in mine if r["config"] == "eager" and "error" not in r), None)
        seed = next((r for r in base if "error" not in r), None)
        for r in mine:
            if "error" in r:
                continue
            if eager:
                r["vs_eager"] = eager["step_ms"] / r["step_ms"]
            if seed:
                r["vs_seed_loop"] = seed["step_ms"] / r["step_ms"]
            else:
                r.pop("vs_seed_loop", None)
            if CONFIGS[r["config"]][0] and eager:
                r["compile_s"] = r["first_step_s"] + r["first_eval_s"] - 2 * eager["step_ms"] / 1000
                saved = (eager["step_ms"] - r["step_ms"]) / 1000
                r["pays_off_after_steps"] = r["compile_s"] / saved if saved > 0 else -1
        for r in base:
            if "error" not in r and eager:
                r["vs_eager"] = eager["step_ms"] / r["step_ms"]
                r["vs_seed_loop"] = seed["step_ms"] / r["step_ms"] if seed else None
        rows.extend(base + mine)
        flush()
    print(_markdown(rows, meta))


if __name__ == "__main__":
    main()
