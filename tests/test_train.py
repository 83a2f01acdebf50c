"""cifarctl train: run folders, plain output, guards, exit codes, every bundled recipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from helpers import CLI, TINY, assert_complete, epoch_lines, only_run, read_pty


# ------------------------------------------------------------------------ happy path
def test_train_off_tty_one_line_per_epoch(cli, runs_dir):
    res = cli("train", "s8_bn", *TINY, "--runs-dir", runs_dir)
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output
    lines = epoch_lines(res.output)
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2  train loss ")
    assert "img/s" in lines[0]
    assert "test loss" in lines[0]
    assert "target FAIL" in res.output  # 2 epochs on noise: the verdict is printed, exit 0
    run = only_run(runs_dir)
    assert run.name.startswith("s8_bn-")
    summary = assert_complete(run, 2)
    assert summary["target"]["passed"] is False
    assert summary["params"] == 43266
    assert summary["model"] == "s8_bn"
    log = (run / "log.txt").read_text()
    assert epoch_lines(log) == lines  # the same plain lines go to log.txt
    env = json.loads((run / "env.json").read_text())
    assert {"python", "torch", "cifarctl", "device", "command", "hostname", "started"} <= set(env)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["format"] == "cifarctl-checkpoint"
    assert ckpt["epoch"] == 2
    assert ckpt["step"] == 8
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
    assert ckpt["recipe"]["epochs"] == 2
    assert ckpt["model_name"] == "s8_bn"


@pytest.mark.parametrize("scheduler,optimizer", [
    ("{name: step, step_size: 1, gamma: 0.5}", "{name: sgd, lr: 0.05}"),
    ("{name: multistep, milestones: [1], gamma: 0.1}", "{name: adam, lr: 0.001}"),
    ("{name: cosine}", "{name: adamw, lr: 0.001}"),
    ("{name: plateau, patience: 0}", "{name: sgd, lr: 0.05, nesterov: true}"),
    ("{name: none}", "{name: sgd, lr: 0.01, momentum: 0}"),
])
def test_schedulers_and_optimizers(tmp_path, scheduler, optimizer):
    from cifarctl.training.run import run_training

    s = run_training("s8_bn", overrides=[*TINY[1::2], f"scheduler={scheduler}", f"optimizer={optimizer}",
                                         "data.source=synthetic:128:32"],
                     runs_dir=tmp_path, device="cpu")
    assert s["status"] == "completed"
    assert s["epochs_done"] == 2
    rows = [json.loads(ln) for ln in (Path(s["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    if scheduler.startswith("{name: step"):
        assert rows[1]["lr"] == pytest.approx(rows[0]["lr"] / 2)


def test_only_full_batches_are_trained(tmp_path):
    from cifarctl.training.batches import count_steps
    from cifarctl.training.run import run_training

    assert count_steps(129, 64) == 2
    assert count_steps(191, 64) == 2
    assert count_steps(192, 64) == 3
    s = run_training("s8_bn", overrides=["data.source=synthetic:191:20", "data.batch_size=64", "epochs=1",
                                         "data.augment=[]"], runs_dir=tmp_path, device="cpu")
    assert s["status"] == "completed"
    assert s["steps"] == 2


def test_albumentations_fallback_with_workers(cli, runs_dir):
    res = cli("train", "s8_bn", *TINY, "--set", "epochs=1", "--set", "data.augment_backend=albumentations",
              "--set", "data.workers=2", "--runs-dir", runs_dir)
    assert res.exit_code == 0, res.output
    assert "augmentation: albumentations per image in 2 DataLoader worker(s)" in res.output
    assert "data.augment_backend is albumentations" in res.output
    assert_complete(only_run(runs_dir), 1)


def test_run_dirs_never_collide(tmp_path):
    from cifarctl.runs import create_run_dir

    made, barrier = [], threading.Barrier(8)

    def make():
        barrier.wait()
        made.append(create_run_dir(tmp_path, "r"))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8
    assert all(p.is_dir() for p in made)
    assert create_run_dir(tmp_path, "r", name="mine").name == "mine"
    assert create_run_dir(tmp_path, "r", name="mine").name == "mine-2"


# ------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("args,needle", [
    (["--set", "optimizer.lr=-1"], "optimizer.lr"),
    (["--set", "data.batchsize=3"], "unknown key"),
    (["--device", "tpu"], "--device"),
    (["--set", "scheduler.pct_start=0.125"], "gives a phase of zero steps"),  # 1 of 8 steps: torch / 0
    (["--set", "model=nope"], "unknown model"),
])
def test_bad_input_exits_2_and_creates_nothing(cli, runs_dir, args, needle):
    res = cli("train", "s8_bn", *TINY, *args, "--runs-dir", runs_dir)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_max_lr_auto_runs_the_range_test_and_resume_keeps_its_choice(cli, runs_dir):
    import yaml

    # 8 steps may well be inconclusive: then the recipe's fallback is used, with a warning
    auto = ["--set", "scheduler.max_lr=auto", "--set", "scheduler.lr_find.num_iter=8",
            "--set", "scheduler.lr_find.fallback_max_lr=0.05"]
    res = cli("train", "s8_bn", *TINY, *auto, "--runs-dir", runs_dir, "--device", "cpu")
    assert res.exit_code == 0, res.output
    run = only_run(runs_dir)
    chosen = yaml.safe_load((run / "recipe.yaml").read_text())["scheduler"]["max_lr"]
    assert isinstance(chosen, float)
    assert chosen > 0
    found = json.loads((run / "lr_find.json").read_text())
    conclusive = found["verdict"] == "ok"
    assert chosen == pytest.approx(found["recommended"] if conclusive else 0.05)
    assert (run / "lr_find.png").stat().st_size > 0
    said = f"chose {chosen:.3g}" if conclusive else "training with scheduler.lr_find.fallback_max_lr 0.05"
    assert said in (run / "log.txt").read_text()
    assert said in res.output
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["recipe"]["scheduler"]["max_lr"] == chosen
    # the same recipe (still saying auto) resumes with the run's number, no second test
    res = cli("train", "s8_bn", *TINY, *auto, "--set", "epochs=3", "--force", "--resume", run)
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((run / "recipe.yaml").read_text())["scheduler"]["max_lr"] == chosen
    assert (run / "log.txt").read_text().count("max_lr auto:") == 1


# ------------------------------------------------------------------------ guards
def test_huge_lr_diverges(cli, runs_dir):
    res = cli("train", "s8_bn", *TINY, "--set", "scheduler={name: none}", "--set", "optimizer.lr=1e12",
              "--set", "model_args.dropout=0", "--runs-dir", runs_dir)
    assert res.exit_code == 3, res.output
    assert "diverged at step" in res.output


def test_negative_loss_exit_4(cli, runs_dir):
    res = cli("train", "s8_bn", *TINY, "--set", "loss={name: nll}", "--set", "epochs=3", "--runs-dir", runs_dir)
    assert res.exit_code == 4, res.output
    assert "loss is negative" in res.output
    assert "'nll' expects log-probabilities but the model outputs logits" in res.output
    assert "use loss: {name: cross_entropy}" in res.output
    summary = json.loads((only_run(runs_dir) / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "loss is negative" in summary["error"]


def test_unexpected_failure_exit_1_traceback_in_log(cli, runs_dir, monkeypatch):
    from cifarctl.training import curves

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(curves, "write_curves", broken)  # raised in the background writer, reported by the run
    res = cli("train", "s8_bn", *TINY, "--set", "epochs=1", "--runs-dir", runs_dir)
    assert res.exit_code == 1
    assert "training failed: OSError" in res.output
    run = only_run(runs_dir)
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert "Traceback (most recent call last)" in (run / "log.txt").read_text()


def test_param_budget_warning(cli, runs_dir):
    res = cli("train", "s8_bn", *TINY, "--set", "epochs=1", "--set", "target.max_params=1000",
              "--runs-dir", runs_dir)
    assert res.exit_code == 2
    assert "parameters: required <= 1,000, measured 43,266" in res.output  # a rule
    res = cli("train", "s8_bn", *TINY, "--set", "epochs=1", "--set", "target.max_params=1000",
              "--runs-dir", runs_dir, "--break-rules")
    assert res.exit_code == 0
    assert "warning: s8_bn has 43,266 params, over target.max_params 1,000" in res.output
    assert "params 43,266 > 1,000 (FAIL)" in res.output


# ------------------------------------------------------------------------ terminal UI
@pytest.mark.slow
def test_progress_ui_on_a_pseudo_terminal(tmp_path):
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # child: a 100x40 terminal
        os.environ.update({"COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color"})
        os.environ.pop("NO_COLOR", None)
        os.execv(sys.executable, [*CLI, "train", "s8_bn", *TINY, "--runs-dir", str(tmp_path)])
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    text, code = read_pty(fd, pid, 120)
    assert code == 0, text[-2000:]
    assert "\x1b[" in text            # a live display, not plain lines
    assert "━" in text                # rich progress bars
    assert "epoch 2/2" in text
    assert "accuracy, loss and learning rate by epoch" in text
    assert "┌" in text  # the plotext chart panel
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "• train" in plain  # its legend, outside the plot
    assert "× test" in plain


# ------------------------------------------------------------------------ every bundled recipe
def _bundled():
    from cifarctl.bundled import bundled_recipes

    return sorted(bundled_recipes())


@pytest.mark.slow
def test_a_bundled_recipe_one_epoch_on_jpeg_copy(jpeg_archive, tmp_path):
    """Real images through the richest augmentation (flip, affine, CoarseDropout), in a real
    process off a terminal; every recipe's own path runs on synthetic images below (the
    images' origin changes nothing after decoding, which tests/test_data.py covers)."""
    from cifarctl.recipe.load import load_recipe

    name = "s9_dilated"
    recipe = load_recipe(name)
    sets = [f"data.source={jpeg_archive}", "epochs=1", "data.train_subset=200", "data.test_subset=100",
            f"data.batch_size={min(recipe.data.batch_size, 100)}", "data.workers=0"]
    if getattr(recipe.scheduler, "max_lr", None) == "auto":
        sets.append("scheduler.max_lr=0.01")
    args = [a for s in sets for a in ("--set", s)]
    proc = subprocess.run([*CLI, "train", name, *args, "--runs-dir", str(tmp_path), "--device", "cpu",
                           "--break-rules"],  # a smaller batch than S10's 512
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b" not in proc.stdout
    assert len(epoch_lines(proc.stdout)) == 1
    summary = assert_complete(only_run(tmp_path), 1)
    assert summary["model"] == recipe.model


@pytest.mark.parametrize("name", _bundled())
def test_bundled_recipe_one_epoch_on_synthetic_data(name, tmp_path):
    """Every bundled recipe, as it is (model, optimizer, schedule, augmentation), for one
    epoch of a few batches of synthetic images: never skipped, a few seconds each."""
    from cifarctl.recipe.load import load_recipe
    from cifarctl.training.run import run_training

    recipe = load_recipe(name)
    sets = ["data.source=synthetic:96:32", "epochs=1", f"data.batch_size={min(recipe.data.batch_size, 32)}",
            "data.test_batch_size=32", "data.workers=0"]
    if getattr(recipe.scheduler, "max_lr", None) == "auto":
        sets.append("scheduler.max_lr=0.01")
    s = run_training(name, overrides=sets, runs_dir=tmp_path, device="cpu")
    assert s["status"] == "completed"
    assert s["epochs_done"] == 1
    assert s["model"] == recipe.model
    assert_complete(only_run(tmp_path), 1)


def test_a_relative_data_path_is_stored_absolute_and_eval_works_from_elsewhere(tmp_path, monkeypatch, cli):
    """CIFARCTL_DATA=relative/path: the run folder names the data by its absolute path."""
    import numpy as np
    from PIL import Image

    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    rng = np.random.default_rng(0)
    for split, n in (("train", 7), ("test", 2)):
        for c in classes:
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / "data" / split / c / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFARCTL_DATA", "data")
    res = cli("train", "s8_bn", "--set", "epochs=1", "--set", "data.batch_size=32", "--runs-dir", "runs",
              "--name", "r", "--device", "cpu")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert summary["data"] == str((tmp_path / "data").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("CIFARCTL_DATA")
    res = cli("eval", str(tmp_path / "runs" / "r"), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["images"] == 20


def test_a_validation_split_chooses_the_best_epoch_and_the_test_split_is_only_reported(tmp_path, cli):
    from cifarctl.analysis.compare import collect_runs
    from cifarctl.checkpoints import load_checkpoint

    res = cli("train", "s8_bn", "--set", "data.source=synthetic:400:60", "--set", "data.batch_size=32",
              "--set", "epochs=3", "--set", "data.val_split=100", "--device", "cpu", "--runs-dir", tmp_path,
              "--name", "v")
    assert res.exit_code == 0, res.output
    assert "300 train / 100 val / 60 test images" in res.output
    assert "chosen on the validation split" in res.output
    run = tmp_path / "v"
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    chosen = max(rows, key=lambda r: r["val_acc"])  # first of equals, as the engine keeps the first best
    chosen = next(r for r in rows if r["val_acc"] == chosen["val_acc"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selected_on"] == "val"
    assert summary["best_epoch"] == chosen["epoch"]
    assert summary["best_val_acc"] == chosen["val_acc"]
    assert summary["best_test_acc"] == chosen["test_acc"]
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == chosen["epoch"]
    runs, _ = collect_runs([run])
    assert runs[0].selected_on == "val"
    assert runs[0].best_acc == chosen["test_acc"]
    res = cli("train", "s8_bn", "--set", "data.source=synthetic:100:20", "--set", "data.val_split=100",
              "--device", "cpu", "--runs-dir", tmp_path)
    assert res.exit_code == 2
    assert "leaves no train images" in res.output
