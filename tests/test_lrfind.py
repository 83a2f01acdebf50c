"""LR range test: suggestions, restoring the model, output files, the lr-find command."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import threading
import time
from datetime import datetime

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cifarctl.errors import UsageError
from cifarctl.training.lrfind import (
    analyse,
    auto_max_lr_problem,
    make_out_dir,
    max_lr_notice,
    choose_max_lr,
    run_lr_find,
    write_lr_find,
)
from cifarctl.recipe.load import load_recipe
from helpers import CLI, read_pty

# s8_bn on 128 synthetic images, batch 32: a few seconds of CPU per sweep.
TINY = ["data.train_subset=128", "data.test_subset=20", "data.batch_size=32"]


def _curve(n: int = 100, start: float = 1e-7, end: float = 10.0):
    """A textbook range-test curve: flat, a descent around 1e-3..1e-1, then a blow-up."""
    lrs = np.geomspace(start, end, n)
    x = np.log10(lrs)
    loss = 2.3 - 1.0 / (1 + np.exp(-(x + 2) * 3)) + np.where(x > -0.5, (x + 0.5) ** 2 * 4, 0)
    return list(lrs), list(loss)


def _within(result) -> None:
    """Every suggestion inside the sweep, and none past the lowest loss or the divergence."""
    limit = result.lr[result.minimum_index] if result.minimum_index is not None else result.end_lr
    for name, v in result.suggestions.items():
        if v is not None:
            assert math.isfinite(v), name
            assert result.start_lr <= v <= result.end_lr, (name, v)
            assert v <= limit * (1 + 1e-9), (name, v, limit)
    if result.recommended is not None:
        assert result.conclusive
        assert result.start_lr <= result.recommended <= limit * (1 + 1e-9)
    else:
        assert not result.conclusive
        assert result.advice
        assert result.inconclusive_reason


# ------------------------------------------------------------------ the result
def test_analyse_builds_the_result_and_its_json():
    lrs, loss = _curve()
    r = analyse(lrs, loss, num_iter=100, start_lr=1e-7, end_lr=10)
    _within(r)
    assert r.conclusive
    assert r.verdict == "ok"
    assert r.recommended == r.suggestions["valley"]
    assert r.recommended_by == "valley"
    assert r.reason.startswith("valley")
    assert r.diverged
    assert r.divergence_index is not None
    assert r.smoothing_window == 10
    d = json.loads(json.dumps(r.to_dict()))
    assert d["verdict"] == "ok"
    assert d["smoothed_loss"][-1] is None  # NaN from the divergence on
    assert d["divergence_index"] == r.divergence_index
    assert d["advice"] == []

    flat = [2.3 + 0.01 * math.sin(i) for i in range(100)]
    r = analyse(lrs, flat, num_iter=100, start_lr=1e-7, end_lr=10)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["verdict"] == "inconclusive"
    assert d["recommended"] is None
    assert d["inconclusive_reason"]
    assert len(d["advice"]) == 3


def test_bad_arguments_are_usage_errors():
    recipe = load_recipe("s8_bn", TINY)
    with pytest.raises(UsageError, match="start_lr"):
        run_lr_find(recipe, data_source="synthetic", start_lr=1.0, end_lr=0.1)
    with pytest.raises(UsageError, match="step_mode"):
        run_lr_find(recipe, data_source="synthetic", step_mode="cosine")


# ------------------------------------------------------------------ the real sweep
def test_sweep_restores_the_model_and_writes_files(tmp_path, data_cache_dir):
    """A real short sweep on a given model: restored afterwards, stopped only at divergence."""
    recipe = load_recipe("s8_bn", TINY)
    from cifarctl.training.builders import build_model

    torch.manual_seed(0)
    model = build_model(recipe)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    seen = []
    r = run_lr_find(recipe, data_source="synthetic", device="cpu", num_iter=20, model=model,
                    progress=lambda i, n, lr, loss: seen.append((i, n, lr, loss)))
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # weights and BatchNorm statistics
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    n = len(r.lr)
    assert 5 <= n <= 20
    assert [s[0] for s in seen] == list(range(1, n + 1))
    assert all(s[1] == 20 for s in seen)
    assert r.lr[0] == pytest.approx(1e-7)
    assert [s[2] for s in seen] == pytest.approx(r.lr)
    assert r.lr == pytest.approx(list(np.geomspace(1e-7, 10, 20))[:n])
    if n < 20:  # stopped early: only at a divergence, which is its last step
        assert r.diverged
        assert r.divergence_index == n - 1
    _within(r)  # read (a recommendation) or inconclusive (advice): never an unbounded guess

    json_path, png_path = write_lr_find(r, tmp_path)
    data = json.loads(json_path.read_text())
    for key in ("lr", "loss", "smoothed_loss", "suggestions", "recommended", "reason", "diverged",
                "num_iter", "verdict", "inconclusive_reason", "advice", "divergence_index", "minimum_index"):
        assert key in data
    assert set(data["suggestions"]) == {"steepest", "valley", "min_div_10"}
    with Image.open(png_path) as im:
        im.load()
        assert im.format == "PNG"
        assert im.size[0] > 300


def test_very_short_sweep(data_cache_dir):
    r = run_lr_find(load_recipe("s8_bn", TINY), data_source="synthetic", device="cpu", num_iter=8)
    assert len(r.lr) <= 8
    assert r.smoothing_window == 1
    _within(r)  # read, or inconclusive with advice: never a crash or an unbounded guess


def test_diverged_sweep_is_a_message_not_a_crash(data_cache_dir):
    recipe = load_recipe("s8_bn", TINY)
    r = run_lr_find(recipe, data_source="synthetic", device="cpu", start_lr=1.0, end_lr=1e8, num_iter=25)
    assert r.diverged
    assert len(r.lr) < 25
    assert "diverged" in r.message
    _within(r)


AUTO = TINY + ["scheduler.max_lr=auto"]
FLAT = ["scheduler.lr_find.start_lr=1e-7", "scheduler.lr_find.end_lr=1e-6", "scheduler.lr_find.num_iter=10"]


def test_resolve_max_lr(data_cache_dir):
    numeric = load_recipe("s8_bn", TINY)
    assert choose_max_lr(numeric) == (0.1, None)
    auto = load_recipe("s8_bn", AUTO + ["scheduler.lr_find.num_iter=20", "scheduler.lr_find.start_lr=1e-5"])
    lr, result = choose_max_lr(auto, data_source="synthetic", device="cpu")
    assert result.conclusive
    assert lr == result.recommended
    assert 1e-5 <= lr <= 10
    assert result.num_iter == 20
    assert result.start_lr == 1e-5
    assert result.fallback is None
    assert max_lr_notice(result, lr).startswith("max_lr auto: the LR range test")
    # out of the recipe's accepted range
    assert "accept_range" in auto_max_lr_problem(result, (lr * 10, lr * 100))
    assert auto_max_lr_problem(result, (lr / 10, lr * 10)) is None
    with pytest.raises(UsageError):
        choose_max_lr(load_recipe("s8_bn", TINY + ["scheduler={name: none}"]))


def test_auto_max_lr_never_trains_on_an_inconclusive_sweep(data_cache_dir):
    """1e-7..1e-6: the loss cannot fall. Without a fallback: a one-line usage error naming
    the key; with scheduler.lr_find.fallback_max_lr: that value and a warning."""
    flat = load_recipe("s8_bn", AUTO + FLAT)
    with pytest.raises(UsageError) as err:
        choose_max_lr(flat, data_source="synthetic", device="cpu")
    msg = str(err.value)
    assert err.value.exit_code == 2
    assert "\n" not in msg
    assert "scheduler.max_lr: auto" in msg
    assert "inconclusive" in msg
    assert "fallback_max_lr" in msg
    assert "s8_bn.yaml" in msg
    assert "scheduler.lr_find.num_iter: 200" in msg

    fallback = load_recipe("s8_bn", AUTO + FLAT + ["scheduler.lr_find.fallback_max_lr=0.05"])
    lr, result = choose_max_lr(fallback, data_source="synthetic", device="cpu")
    assert lr == 0.05
    assert not result.conclusive
    assert "inconclusive" in result.fallback
    notice = max_lr_notice(result, lr)
    assert notice.startswith("warning: max_lr auto")
    assert "fallback_max_lr 0.05" in notice


def test_train_refuses_an_inconclusive_auto_max_lr(tmp_path, data_cache_dir):
    from helpers import TINY as TRAIN_TINY

    runs = tmp_path / "runs"
    args = ["train", "s8_bn", *TRAIN_TINY, "--set", "epochs=1", "--device", "cpu", "--runs-dir", str(runs),
            "--set", "scheduler.max_lr=auto"] + [a for f in FLAT for a in ("--set", f)]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 2, res.output
    assert "scheduler.max_lr: auto" in res.output
    assert "inconclusive" in res.output
    assert not runs.exists() or not any(runs.iterdir())  # nothing created

    res = CliRunner().invoke(_app(), args + ["--set", "scheduler.lr_find.fallback_max_lr=0.05"])
    assert res.exit_code == 0, res.output
    assert "warning: max_lr auto" in res.output
    assert "fallback_max_lr 0.05" in res.output
    # off a terminal the sweep inside `train` is not silent: a line every 10 % (10 steps: each)
    sweep = [ln for ln in res.output.splitlines() if ln.startswith("max_lr: auto, LR range test ")]
    assert [ln.split()[5] for ln in sweep if "%)" in ln] == [f"{i}/10" for i in range(1, 11)]
    assert sweep[-1].split()[5:7] == ["10/10", "(100%)"]
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    import yaml

    assert yaml.safe_load((run / "recipe.yaml").read_text())["scheduler"]["max_lr"] == 0.05
    assert json.loads((run / "lr_find.json").read_text())["verdict"] == "inconclusive"


def test_out_dir_never_overwrites(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5)
    a = make_out_dir(tmp_path, "s8_bn", now)
    b = make_out_dir(tmp_path, "s8_bn", now)
    assert a.name == "s8_bn-20260102-030405"
    assert b.name == "s8_bn-20260102-030405-2"


# ------------------------------------------------------------------------- command
def _app():
    from cifarctl.cli import app

    return app


def _invoke(*args: str):
    return CliRunner().invoke(_app(), list(args), catch_exceptions=False)


def test_cli_lr_find(tmp_path, data_cache_dir):
    # Without augmentation: whether a 20-step sweep over 128 random images falls clearly
    # enough depends on the augmentation's draws (the verdict itself is tested on its own).
    common = ["--num-iter", "20", "--data", "synthetic", "--device", "cpu", "--runs-dir", str(tmp_path),
              "--set", "data.train_subset=128", "--set", "data.augment=[]", "--batch-size", "32"]
    res = _invoke("lr-find", "s8_bn", *common)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "recommended lr" in out
    assert "valley" in out
    assert "learning rate" in out  # the chart
    assert "See the graph" not in out
    assert "it/s" not in out  # torch-lr-finder silenced
    assert "\x1b" not in out
    # off a terminal: the device in the header, a duration estimate, a line every ~10 %
    assert "on cpu (" in "\n".join(out.splitlines()[:2])  # the header: what was resolved, then the sweep
    assert "s/step after 3 steps: about" in out
    lines = out.splitlines()  # the length and a first estimate before the first step
    planned = next(i for i, ln in enumerate(lines) if ln.startswith("sweep: 20 steps, about "))
    assert planned < next(i for i, ln in enumerate(lines) if ln.startswith(("sweep 1/", "sweep 2/")))
    progress = [ln for ln in out.splitlines() if re.match(r"sweep \d+/20 \(\d+%\)", ln)]
    assert len(progress) >= 8
    assert progress[0].startswith("sweep 2/20 (10%)")
    assert progress[-1].startswith("sweep 20/20") or "sweep stopped at step" in out
    folders = list((tmp_path / "lr-find").iterdir())
    assert len(folders) == 1
    assert folders[0].name.startswith("s8_bn-")
    assert {p.name for p in folders[0].iterdir()} == {"lr_find.json", "lr_find.png"}

    res = _invoke("lr-find", "s8_bn", *common, "--json", "--optimizer", "adam", "--weight-decay", "0.01")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)  # JSON only: no progress lines
    assert data["num_iter"] == 20
    assert data["settings"]["optimizer"] == "adam"
    assert data["settings"]["weight_decay"] == 0.01
    assert data["settings"]["batch_size"] == 32
    assert data["verdict"] in ("ok", "inconclusive")
    assert (data["recommended"] is not None) == (data["verdict"] == "ok")
    assert len(list((tmp_path / "lr-find").iterdir())) == 2


def test_cli_lr_find_inconclusive(tmp_path, data_cache_dir):
    res = _invoke("lr-find", "s8_bn", "--num-iter", "10", "--start-lr", "1e-7", "--end-lr", "1e-6",
                  "--data", "synthetic", "--device", "cpu", "--runs-dir", str(tmp_path),
                  "--set", "data.train_subset=128", "--set", "data.augment=[]", "--batch-size", "32")
    assert res.exit_code == 0, res.output
    assert "inconclusive:" in res.output
    assert "no lr is recommended" in res.output
    assert "recommended lr" not in res.output
    assert "try: more iterations" in res.output


def test_cli_lr_find_bad_target(tmp_path):
    res = _invoke("lr-find", "s8_bm", "--runs-dir", str(tmp_path))
    assert res.exit_code == 2
    assert "s8_bn" in res.output


# ------------------------------------------------------------------------- Ctrl-C
def _start_lr_find(tmp_path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "100"}
    return subprocess.Popen([*CLI, "lr-find", *args, "--data", "synthetic", "--device", "cpu",
                             "--runs-dir", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)


def _lines(stream, sink: list) -> None:
    for line in stream:
        sink.append((time.monotonic(), line))


def _interrupt(proc: subprocess.Popen, ready) -> tuple[float, float | None, list, list]:
    """Wait for ``ready(stdout lines)``, send SIGINT; (seconds to exit, seconds to the
    acknowledgement on stderr, stdout lines, stderr lines)."""
    out: list = []
    err: list = []
    threads = [threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=_lines, args=(proc.stderr, err), daemon=True)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 240
    while not ready([ln for _, ln in out]):
        assert proc.poll() is None, "".join(ln for _, ln in out + err)
        assert time.monotonic() < deadline, "".join(ln for _, ln in out + err)
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    exited = time.monotonic() - sent
    for t in threads:
        t.join(timeout=5)
    ack = next((t - sent for t, ln in err if "interrupted: stopping the LR range test" in ln), None)
    return exited, ack, [ln for _, ln in out], [ln for _, ln in err]


@pytest.mark.slow
def test_ctrl_c_during_lr_find_exits_130_at_once(tmp_path, data_cache_dir):
    """Off a terminal, mid-sweep: acknowledged at once, exit 130 within ~2 s, nothing written."""
    proc = _start_lr_find(tmp_path, "s8_bn", "--num-iter", "100000", "--set", "data.train_subset=128",
                          "--batch-size", "32")
    exited, ack, out, err = _interrupt(proc, lambda lines: any("s/step after" in ln for ln in lines))
    assert proc.returncode == 130, "".join(out + err)
    assert ack is not None, err
    assert ack < 1.0, err
    assert exited < 2.5, exited
    assert not (tmp_path / "runs" / "lr-find").exists() or not any((tmp_path / "runs" / "lr-find").iterdir())
    assert "Traceback" not in "".join(err)


@pytest.mark.slow
def test_ctrl_c_during_a_long_step(tmp_path, data_cache_dir):
    """resnet_custom on the CPU: one backward pass holds the main thread for seconds, so
    Python cannot run its handler; the acknowledgement still comes at once and the
    process exits 130 within ~2 s."""
    proc = _start_lr_find(tmp_path, "resnet_custom", "--num-iter", "50", "--set", "data.train_subset=128",
                          "--set", "data.batch_size=64")
    exited, ack, out, err = _interrupt(proc, lambda lines: any("s/step after" in ln for ln in lines))
    assert proc.returncode == 130, "".join(out + err)
    assert ack is not None, err
    assert ack < 1.0, err
    assert exited < 2.5, exited
    assert "Traceback" not in "".join(err)


# ------------------------------------------------------------ torch-lr-finder, held to it
PARITY = ["data.train_subset=128", "data.test_subset=20", "data.batch_size=32", "optimizer.lr=1e-4"]


def _seed_style_finder(recipe, num_iter: int, end_lr: float, **range_test):
    """torch-lr-finder as the seeds call it: ``LRFinder(model, optimizer, criterion)`` and
    ``range_test(train_loader, end_lr=..., num_iter=..., step_mode="exp")`` on a DataLoader,
    fed the batches cifarctl's engine makes for that recipe and seed (same order, same
    augmentation draws), on a model built from the same seed."""
    from torch_lr_finder import LRFinder

    from cifarctl.data import load_cifar, resolve_source
    from cifarctl.training.batches import Batches
    from cifarctl.training.builders import build_loss, build_model, build_optimizer

    dev = torch.device("cpu")
    data = load_cifar(resolve_source("synthetic"), progress=False, train_subset=recipe.data.train_subset,
                      test_subset=recipe.data.test_subset, seed=recipe.seed)
    batches = Batches(recipe, data, dev, torch.Generator(device=dev).manual_seed(recipe.seed))
    stream: list = []
    while len(stream) < num_iter:
        stream += [xy for _, xy in zip(range(num_iter - len(stream)), batches.plan().iterate())]
    loader = torch.utils.data.DataLoader(stream, batch_size=None, generator=torch.Generator())
    torch.manual_seed(recipe.seed)
    model = build_model(recipe)
    finder = LRFinder(model, build_optimizer(model, recipe), build_loss(recipe), device="cpu")
    finder.range_test(loader, end_lr=end_lr, num_iter=num_iter, step_mode="exp", **range_test)
    return finder.history


def test_lr_find_records_what_torch_lr_finder_records(tmp_path, data_cache_dir, capsys):
    """Same seed, model, batches and schedule: `cifarctl lr-find` and a plain
    ``LRFinder.range_test`` record the same lrs and losses up to the divergence."""
    n, end = 40, 100.0  # the optimizer's lr (1e-4) to 100: diverges near lr 50
    res = _invoke("lr-find", "s8_bn", "--num-iter", str(n), "--start-lr", "1e-4", "--end-lr", str(end),
                  "--data", "synthetic", "--device", "cpu", "--runs-dir", str(tmp_path),
                  *[a for s in PARITY for a in ("--set", s)])
    assert res.exit_code == 0, res.output
    (folder,) = (tmp_path / "lr-find").iterdir()
    ours = json.loads((folder / "lr_find.json").read_text())
    assert ours["diverged"]
    assert len(ours["lr"]) < n  # stopped by our rule, before the end
    lrs, raw = ours["lr"], ours["loss"]

    recipe = load_recipe("s8_bn", PARITY)
    capsys.readouterr()
    seeds = _seed_style_finder(recipe, n, end)  # default smoothing (0.05) and divergence rule (5x)
    out, err = capsys.readouterr()
    assert "Learning rate search finished" in out
    assert "it/s" in err  # what lr-find keeps quiet
    plain = _seed_style_finder(recipe, n, end, smooth_f=0, diverge_th=math.inf)  # raw losses

    k = min(len(lrs), len(seeds["lr"]))
    assert k == len(lrs) >= 15  # everything up to our divergence is compared
    ema = [raw[0]]
    for v in raw[1:k]:
        ema.append(0.05 * v + 0.95 * ema[-1])  # torch-lr-finder's smoothing of our raw series
    d_lr = max(abs(a - b) / b for a, b in zip(lrs, plain["lr"]))
    d_raw = max(abs(a - b) for a, b in zip(raw, plain["loss"]))
    d_smoothed = max(abs(a - b) for a, b in zip(ema, seeds["loss"]))
    print(f"parity over {k} steps: max rel |dlr| {d_lr:.1e}, max |dloss| raw {d_raw:.1e}, "
          f"smoothed {d_smoothed:.1e}")
    assert seeds["lr"][:k] == pytest.approx(lrs, rel=1e-12)
    assert d_lr <= 1e-12
    assert d_raw <= 1e-6
    assert d_smoothed <= 1e-6


def test_the_bar_shows_and_torch_lr_finder_stays_quiet(capsys, data_cache_dir):
    """On a terminal: our bar draws on its console, during the sweep too (the refresh
    thread), while nothing of torch-lr-finder (its tqdm bar, its prints) reaches stdout or
    stderr; the estimate comes before the first step."""
    import io

    from rich.console import Console

    from cifarctl.ui.sweep_progress import SweepProgress

    term = io.StringIO()
    console = Console(file=term, force_terminal=True, width=100)
    steps: list[int] = []

    def first(n, seconds):
        assert not steps
        assert n == 12
        assert seconds > 0

    with SweepProgress(console, 12) as bar:
        def progress(i, n, lr, loss):
            steps.append(i)
            bar(i, n, lr, loss)

        run_lr_find(load_recipe("s8_bn", TINY), data_source="synthetic", device="cpu", num_iter=12,
                    progress=progress, on_start=lambda n, s: (first(n, s), bar.planned(n, s)))
    out, err = capsys.readouterr()
    assert steps
    assert out == ""
    assert err == ""
    drawn = term.getvalue()
    assert "━" in drawn
    assert "sweep" in drawn
    assert f"{len(steps)}/12" in drawn
    assert "sweep: 12 steps, about" in drawn


def _private_uses(source: str) -> list[str]:
    """Where ``source`` reaches past torch-lr-finder's public API: a private name, a
    submodule, a subclass of LRFinder, an assignment to one of its module attributes, a
    private attribute of something it made."""
    import ast

    tree = ast.parse(source)
    module_names: set[str] = set()   # names bound to torch_lr_finder (or a submodule)
    made: set[str] = set()           # names bound to what it exports or to instances of it
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "torch_lr_finder":
                    if a.name != "torch_lr_finder":
                        found.append(f"line {node.lineno}: imports the submodule {a.name}")
                    module_names.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch_lr_finder":
            if node.module != "torch_lr_finder":
                found.append(f"line {node.lineno}: imports from the submodule {node.module}")
            for a in node.names:
                if a.name.startswith("_"):
                    found.append(f"line {node.lineno}: imports the private name {a.name}")
                made.add(a.asname or a.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            f = node.value.func
            if (isinstance(f, ast.Name) and f.id in made) or (
                    isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in module_names):
                made.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = node.value.id
            if owner in module_names | made and node.attr.startswith("_") and not node.attr.endswith("__"):
                found.append(f"line {node.lineno}: uses the private {owner}.{node.attr}")
            if owner in module_names and isinstance(node.ctx, ast.Store):
                found.append(f"line {node.lineno}: assigns {owner}.{node.attr}")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                if name == "LRFinder":
                    found.append(f"line {node.lineno}: subclasses LRFinder")
    return found


def test_torch_lr_finder_is_used_through_its_public_api_only():
    from pathlib import Path

    import cifarctl

    root = Path(cifarctl.__file__).parent
    users = {p: p.read_text() for p in root.rglob("*.py") if "torch_lr_finder" in p.read_text()}
    assert root / "training" / "lrfind.py" in users
    for path, text in users.items():
        assert _private_uses(text) == [], path
    # the check sees what the earlier version did
    old = ("import torch_lr_finder.lr_finder as tlf\nfrom torch_lr_finder import LRFinder\n"
           "class _Finder(LRFinder):\n    pass\n"
           "tlf.tqdm = lambda it, *a, **k: it\nfinder = LRFinder(m, o, c)\nfinder._set_learning_rate(1)\n")
    assert len(_private_uses(old)) == 4


@pytest.mark.slow
def test_lr_find_on_a_pseudo_terminal(tmp_path, data_cache_dir):
    """The real command on a terminal: the live bar is drawn during the sweep (its console is
    bound to the terminal while sys.stdout/stderr go to torch-lr-finder's buffer), and
    nothing of torch-lr-finder (tqdm's bar, its prints) reaches the terminal."""
    import pty
    import sys

    n = 30
    pid, fd = pty.fork()
    if pid == 0:  # child: a 100x40 terminal, stdout and stderr both on it
        os.environ.update({"COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color"})
        os.environ.pop("NO_COLOR", None)
        os.execv(sys.executable, [*CLI, "lr-find", "s8_bn", "--num-iter", str(n), "--data", "synthetic",
                                  "--device", "cpu", "--runs-dir", str(tmp_path), "--set", "data.train_subset=128",
                                  "--batch-size", "32"])
    text, code = read_pty(fd, pid, 240)
    assert code == 0, text[-2000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "━" in text
    assert f"sweep: {n} steps, about" in plain
    drawn = {int(m) for m in re.findall(rf"\b(\d+)/{n}\b", plain)}
    assert len(drawn) >= 3, drawn  # redrawn during the sweep, not only when it starts and stops
    assert "it/s" not in plain
    assert "%|" not in plain  # tqdm
    assert "Learning rate search finished" not in plain
    assert "See the graph" not in plain
    assert "recommended lr" in plain or "inconclusive" in plain
