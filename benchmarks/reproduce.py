"""Reproduce the assignments: train bundled recipes with several seeds and tabulate.

Usage:
  python benchmarks/reproduce.py --data ../shared/data/cifar10-jpeg.tar.xz \
      [--recipes s8_bn s10_resnet_custom ...] [--seeds 1 2 3] [--device cuda] \
      [--set data.train_subset=500 ...] [--out benchmarks/results] [--tag H100]

Each run is a real `cifarctl train` (subprocess); its summary.json gives best and final
test accuracy, epochs and training time. Results go to `<out>/reproduce-<tag>.json` and
`.md`, tagged with machine, device, torch version, data source and date. A recipe whose
runs all meet its target prints PASS.

Runs trained elsewhere (long background runs, resumable) are tabulated with
  python benchmarks/reproduce.py --from-runs RUN_DIR... --tag cpu [--copy-runs]
one row per run folder (finished or not, said in the row); --copy-runs also copies each
run's metrics.jsonl, summary.json, recipe.yaml, env.json and log.txt (never checkpoints)
to `<out>/reproduction/<run>/`, so `cifarctl compare benchmarks/results/reproduction` shows them
(and `cifarctl report` writes their curves, log and analysis; not the parts that need a checkpoint).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cifarctl.recipe.load import load_recipe  # noqa: E402


def mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def device_name(device: str) -> str:
    try:
        import torch

        if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - informational only
        pass
    return platform.processor() or platform.machine()


def run_one(recipe: str, seed: int, args, runs_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "cifarctl", "train", recipe, "--seed", str(seed),
           "--runs-dir", str(runs_dir), "--name", f"{recipe}-seed{seed}", "--device", args.device]
    if args.data:
        cmd += ["--data", args.data]
    for s in args.set or []:
        cmd += ["--set", s]
    if args.lr_find_iters and getattr(load_recipe(recipe).scheduler, "max_lr", None) == "auto":
        cmd += ["--set", f"scheduler.lr_find.num_iter={args.lr_find_iters}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
    summaries = sorted(runs_dir.glob(f"{recipe}-seed{seed}*/summary.json"))
    summary = json.loads(summaries[-1].read_text()) if summaries else {}
    return {"recipe": recipe, "seed": seed, "exit_code": proc.returncode, "wall_s": wall, "summary": summary}


def references(recipe, name: str | None) -> tuple[float | None, float | None]:
    """(the assignment's threshold, the best public figure): from today's bundled recipe of
    that name (one figure for every run of it, old or new), else the run's own rules."""
    rules = recipe.rules
    if name:
        try:
            rules = load_recipe(name).rules or rules
        except Exception:  # noqa: BLE001 - not a bundled recipe: the run's own rules
            pass
    if rules is None:
        return None, None
    return rules.min_test_acc, rules.best_public.acc if rules.best_public else None


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def write_tables(results: list[dict], recipes: list[str], args, torch_version: str) -> list[str]:
    """Write reproduce-<tag>.json/.md from the runs so far; return the markdown lines."""
    rows = []
    for recipe in recipes:
        r = load_recipe(recipe, args.set or [])
        rs = [x for x in results if x["recipe"] == recipe and x["summary"]]
        if not rs:
            continue
        walls = [x["wall_s"] for x in rs]
        best = [x["summary"].get("best_test_acc", float("nan")) for x in rs]
        final = [x["summary"].get("final_test_acc", float("nan")) for x in rs]
        secs = [x["summary"].get("total_seconds", float("nan")) for x in rs]
        target = r.target.min_test_acc
        ok = all(b >= target for b in best) if target is not None else None
        threshold, public = references(r, recipe)
        rows.append({
            "recipe": recipe, "runs": len(rs), "epochs": r.epochs, "target": target,
            "assignment_threshold": threshold, "best_public": public,
            "best_mean": mean_std(best)[0], "best_std": mean_std(best)[1],
            "final_mean": mean_std(final)[0], "final_std": mean_std(final)[1],
            "seconds_mean": mean_std(secs)[0], "wall_mean": mean_std(walls)[0], "verdict": "PASS" if ok else ("FAIL" if ok is False else "-"),
        })

    meta = {
        "date": date.today().isoformat(), "machine": platform.node(), "tag": args.tag,
        "device": device_name(args.device), "torch": torch_version, "python": platform.python_version(),
        "data": args.data or "default source", "overrides": args.set or [], "seeds": args.seeds,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"reproduce-{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows, "runs": results}, indent=2))
    lines = [
        f"# Reproduction on {meta['device']} ({args.tag}), {meta['date']}",
        "",
        f"torch {meta['torch']}, data: {meta['data']}, seeds {args.seeds}, overrides {args.set or 'none'}",
        "",
        "| recipe | runs | epochs | target % | assignment threshold % | best public % | best % (mean ± std) "
        "| final % (mean ± std) | train time s | wall s | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for x in rows:
        lines.append(
            f"| {x['recipe']} | {x['runs']} | {x['epochs']} | {x['target']} | {_pct(x['assignment_threshold'])} "
            f"| {_pct(x['best_public'])} | {x['best_mean']:.2f} ± {x['best_std']:.2f} "
            f"| {x['final_mean']:.2f} ± {x['final_std']:.2f} | {x['seconds_mean']:.1f} | {x['wall_mean']:.1f} "
            f"| {x['verdict']} |"
        )
    (out / f"reproduce-{args.tag}.md").write_text("\n".join(lines) + "\n")
    return lines


JPEG_COPY = "cifar10-jpeg.tar.xz"


def _bundled_at(name: str, revision: str | None) -> str | None:
    """The text of recipes/<name>.yaml at git ``revision`` (None: the working tree's)."""
    if revision is None:
        path = ROOT / "recipes" / f"{name}.yaml"
        return path.read_text() if path.is_file() else None
    proc = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:recipes/{name}.yaml"],
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def bundled_differences(run_recipe: dict, name: str | None, seed, revision: str | None) -> list[str] | None:
    """How the run's resolved recipe differs from the bundled recipe ``name`` as it was at
    ``revision`` (None: as it is now); None when there is no such bundled recipe (or it no
    longer validates). Compared key by key as ``compare`` groups runs (resolved with today's
    schema defaults, minus the seed and the settings that cannot change results: texts,
    target, rules, logging, speed-only knobs); data.source is not part of a recipe."""
    from cifarctl.analysis.grouping import setup_of

    text = _bundled_at(name, revision) if name else None
    if text is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(text)
        try:
            bundled = load_recipe(str(path), [f"seed={int(seed)}"] if seed is not None else [])
        except Exception:  # noqa: BLE001 - a recipe of an older schema
            return None
    mine, theirs = setup_of(run_recipe), setup_of(bundled.to_dict())
    return [f"{k}: {mine.get(k, '<unset>')!r} -> {theirs.get(k, '<unset>')!r}"
            for k in sorted(set(mine) | set(theirs)) if k != "data.source" and mine.get(k) != theirs.get(k)]


def run_row(run_dir: Path) -> dict:
    """One finished (or unfinished) run folder as a reproduction row."""
    summary = json.loads((run_dir / "summary.json").read_text())
    env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    recipe = load_recipe(str(run_dir / "recipe.yaml"))
    target = recipe.target.min_test_acc
    reached = next((e["epoch"] for e in epochs if target is not None and e["test_acc"] >= target), None)
    best = summary.get("best_test_acc")
    done, planned = summary.get("epochs_done"), summary.get("epochs_planned")
    if summary.get("status") != "completed":
        verdict = f"not finished ({summary.get('status')}, {done}/{planned} epochs)"
    elif target is None:
        verdict = "-"
    else:
        verdict = "PASS" if best is not None and best >= target else "FAIL"
    ips = sorted(e["images_per_s"] for e in epochs if e.get("images_per_s"))
    data = summary.get("data") or ""
    threshold, public = references(recipe, summary.get("recipe"))
    revision = env.get("git_revision")
    then = bundled_differences(recipe.to_dict(), summary.get("recipe"), summary.get("seed"), revision) \
        if revision else None
    now = bundled_differences(recipe.to_dict(), summary.get("recipe"), summary.get("seed"), None)
    return {
        "run": run_dir.name, "recipe": summary.get("recipe"), "seed": summary.get("seed"),
        "epochs_done": done, "epochs_planned": planned, "best_test_acc": best,
        "best_epoch": summary.get("best_epoch"), "final_test_acc": summary.get("final_test_acc"),
        "seed_figure": target, "assignment_threshold": threshold, "best_public": public,
        "first_epoch_at_target": reached, "verdict": verdict,
        # trained the bundled recipe exactly as it was at the run's own commit / as it is now
        "bundled": then == [], "git_revision": revision, "bundled_now": now == [],
        "differs_from_bundled_now": now,
        "train_seconds": sum(e.get("train_seconds", e.get("seconds", 0.0)) for e in epochs),
        "total_seconds": summary.get("total_seconds"),
        "median_img_s": ips[len(ips) // 2] if ips else None,
        "device": summary.get("device"), "machine": env.get("hostname"), "torch": env.get("torch"),
        "started": env.get("started") or summary.get("started"),
        "data": "JPEG copy" if data.endswith(JPEG_COPY) else data, "status": summary.get("status"),
        "per_epoch": [{k: e.get(k) for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")}
                      for e in epochs],
    }


def bundled_table(rows: list[dict]) -> list[str]:
    """The recipes as bundled now: best test accuracy, mean ± sample std over the finished
    runs that trained exactly that recipe (one per seed: the last started), with the number
    of seeds."""
    lines = ["## The recipes as bundled now (runs whose resolved recipe equals it)", "",
             "| recipe | seeds | best % (mean ± std) | final % (mean ± std) | best public % | runs |",
             "|---|---:|---:|---:|---:|---|"]
    latest: dict[tuple, dict] = {}  # one run per recipe and seed: the last one started
    for r in sorted(rows, key=lambda r: r.get("started") or ""):
        if r["bundled_now"] and r["status"] == "completed":
            latest[(r["recipe"], r["seed"])] = r
    by: dict[str, list[dict]] = {}
    for (name, _), r in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        by.setdefault(name, []).append(r)
    for name, rs in sorted(by.items()):
        b = mean_std([r["best_test_acc"] for r in rs])
        f = mean_std([r["final_test_acc"] for r in rs])
        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(f"| {name} | {len(rs)} ({seeds}) | {b[0]:.2f} ± {b[1]:.2f} | {f[0]:.2f} ± {f[1]:.2f} "
                     f"| {_pct(rs[0]['best_public'])} | {', '.join(r['run'] for r in rs)} |")
    return lines


def from_runs(args) -> None:
    import shutil

    rows = [run_row(Path(d)) for d in args.from_runs]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": date.today().isoformat(), "tag": args.tag, "note": args.note}
    (out / f"reproduce-{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"# Reproduction runs ({args.tag}), tabulated {meta['date']}", "",
        *([args.note, ""] if args.note else []),
        "| run | recipe | seed | epochs | best % (epoch) | final % | seed's figure % | assignment threshold % "
        "| best public % | target first met | verdict | bundled then/now | train s | img/s (median) | device "
        "| machine | torch | data |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        met = f"epoch {r['first_epoch_at_target']}" if r["first_epoch_at_target"] else "never"
        lines.append(
            f"| {r['run']} | {r['recipe']} | {r['seed']} | {r['epochs_done']}/{r['epochs_planned']} "
            f"| {r['best_test_acc']:.2f} ({r['best_epoch']}) | {r['final_test_acc']:.2f} | {r['seed_figure']} "
            f"| {_pct(r['assignment_threshold'])} | {_pct(r['best_public'])} | {met} "
            f"| {r['verdict']} | {'yes' if r['bundled'] else 'no'}/{'yes' if r['bundled_now'] else 'no'} "
            f"| {r['train_seconds']:,.0f} | {r['median_img_s'] or float('nan'):,.0f} | {r['device']} "
            f"| {r['machine']} | {r['torch']} | {r['data']} |")
    lines += ["", *bundled_table(rows)]
    (out / f"reproduce-{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.copy_runs:
        for d in map(Path, args.from_runs):
            dest = out / "reproduction" / d.name  # not ".../runs/": run folders with checkpoints stay untracked
            if dest.resolve() == d.resolve():  # a run already copied, tabulated again
                continue
            dest.mkdir(parents=True, exist_ok=True)
            for f in ("metrics.jsonl", "summary.json", "recipe.yaml", "env.json", "log.txt"):
                if (d / f).exists():
                    shutil.copy2(d / f, dest / f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", default=None, help="default: every bundled recipe")
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    ap.add_argument("--data", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", help="override passed to every run")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--tag", default=platform.node())
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--lr-find-iters", type=int, default=None,
                    help="steps of the LR range test for max_lr: auto recipes (tiny CPU runs)")
    ap.add_argument("--from-runs", nargs="+", metavar="RUN_DIR",
                    help="tabulate existing run folders instead of training")
    ap.add_argument("--copy-runs", action="store_true",
                    help="with --from-runs: copy each run's metrics/summary/recipe (no checkpoints) to <out>/reproduction/")
    ap.add_argument("--note", default="", help="a line under the table's title (e.g. how the runs shared the machine)")
    args = ap.parse_args()
    if args.from_runs:
        from_runs(args)
        return

    from cifarctl.bundled import bundled_recipes

    recipes = args.recipes or sorted(bundled_recipes())
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="cifarctl-repro-"))
    import torch

    results, lines = [], []
    for recipe in recipes:
        for seed in args.seeds:
            results.append(run_one(recipe, seed, args, runs_dir))
            lines = write_tables(results, recipes, args, torch.__version__)  # a killed call keeps these
    print("\n".join(lines))


if __name__ == "__main__":
    main()
