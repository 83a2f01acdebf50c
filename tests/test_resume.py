"""Checkpoints and resume: bitwise-equal weights after an interruption, signals, atomic saves."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from helpers import TINY, only_run

STOP = "CIFARCTL_TEST_STOP_AT_STEP"


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds", "images_per_s")} for r in rows]


@pytest.fixture(scope="module")
def reference(tiny_copy):
    """An uninterrupted 2-epoch run (4 steps per epoch) of the TINY recipe."""
    return tiny_copy


# ------------------------------------------------------------------------ resume equivalence
WHERE = {  # stop at global step N (4 steps per epoch): where the stop and the resume say they are
    2: ("in epoch 1 after step 2/4", "resuming in epoch 1 at step 3/4"),
    4: ("after epoch 1", "resuming at the start of epoch 2"),
    6: ("in epoch 2 after step 2/4", "resuming in epoch 2 at step 3/4"),
}


@pytest.mark.parametrize("stop_at", [2, 4, 6], ids=["mid-epoch-1", "between-epochs", "mid-epoch-2"])
def test_interrupted_then_resumed_equals_uninterrupted(cli, runs_dir, monkeypatch, reference, stop_at):
    monkeypatch.setenv(STOP, str(stop_at))
    res = cli("train", "s8_bn", *TINY, "--runs-dir", runs_dir)
    assert res.exit_code == 130, res.output
    run = only_run(runs_dir)
    stopped, resuming = WHERE[stop_at]
    # asked for, so not an error: no "error:", the place and how to go on
    assert f"stopped by SIGINT {stopped}: saved {run / 'checkpoints' / 'last.pt'}; continue with " \
           f"`cifarctl train --resume {run}`" in res.output
    assert "error:" not in res.output, res.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == stop_at
    assert (ckpt["progress"] is None) == (stop_at % 4 == 0)
    if ckpt["progress"]:
        assert ckpt["progress"]["step_in_epoch"] == stop_at % 4

    monkeypatch.delenv(STOP)
    res = cli("train", "--resume", run)  # the recipe comes from the checkpoint
    assert res.exit_code == 0, res.output
    assert f"test images, {resuming}\n" in res.output
    assert only_run(runs_dir) == run  # appended to the same folder
    ref, got = weights(reference), weights(run)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert metrics(run) == metrics(reference)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_done"] == 2
    env = json.loads((run / "env.json").read_text())
    assert len(env["resumes"]) == 1


def test_resume_with_the_recipe_argument_and_different_recipe(cli, runs_dir, monkeypatch):
    monkeypatch.setenv(STOP, "4")
    assert cli("train", "s8_bn", *TINY, "--runs-dir", runs_dir).exit_code == 130
    monkeypatch.delenv(STOP)
    run = only_run(runs_dir)
    res = cli("train", "s8_bn", *TINY, "--set", "epochs=3", "--resume", run)
    assert res.exit_code == 2
    assert "the recipe differs from the run's (epochs: 2 -> 3)" in res.output
    assert "--force" in res.output
    # data.source is the one key that may differ
    res = cli("train", "s8_bn", *TINY, "--resume", run, "--data", "synthetic:256:64")
    assert res.exit_code == 0, res.output
    res = cli("train", "s8_bn", *TINY, "--resume", run)
    assert res.exit_code == 2
    assert "already finished its 2 epochs" in res.output
    res = cli("train", "s8_bn", *TINY, "--set", "epochs=3", "--resume", run, "--force")
    assert res.exit_code == 0, res.output
    assert [m["epoch"] for m in metrics(run)] == [1, 2, 3]


def test_resume_of_a_missing_or_broken_run(cli, tmp_path):
    res = cli("train", "--resume", tmp_path / "nope")
    assert res.exit_code == 2
    assert "no such run folder" in res.output
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"")
    res = cli("train", "--resume", tmp_path / "run")
    assert res.exit_code == 2
    assert "last.pt: not a readable checkpoint (empty file" in res.output


# ------------------------------------------------------------------------ what a stop leaves on screen
def screen(text: str) -> list[str]:
    """The lines a terminal shows after ``text``: enough of one for rich's live display
    (carriage return, newline, cursor up, erase line; colours and cursor hiding ignored)."""
    import re

    rows, row, col = [""], 0, 0
    for part in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", text):
        if part == "\r":
            col = 0
        elif part == "\n":
            row, col = row + 1, 0
            rows += [""] * (row + 1 - len(rows))
        elif part.startswith("\x1b["):
            if part.endswith("A"):
                row = max(0, row - int(part[2:-1] or 1))
            elif part == "\x1b[2K":
                rows[row] = ""
        elif part:
            line = rows[row].ljust(col)
            rows[row] = line[:col] + part + line[col + len(part):]
            col += len(part)
    return [r.rstrip() for r in rows if r.strip()]


def test_a_stop_erases_the_progress_bars_before_its_lines():
    import io

    from rich.console import Console

    from cifarctl.ui.train_view import TrainView

    out = io.StringIO()
    view = TrainView(Console(file=out, force_terminal=True, width=120, height=40), tty=True, chart=False)
    start = {"type": "start", "epoch": 0, "epochs": 3, "steps": 4, "model": "s8_bn", "params": 43266,
             "device": "cpu", "train_images": 256, "test_images": 64, "history": [], "resumed_step": 0}
    with pytest.raises(KeyboardInterrupt):
        with view:
            view.handle(start)
            for i in (1, 2):
                view.handle({"type": "step", "epoch": 1, "epochs": 3, "step": i, "steps": 4, "loss": 2.0,
                             "acc": 20.0, "lr": 0.01, "images_per_s": 1.0})
            view.live.refresh()
            running = screen(out.getvalue())
            assert running[-2].startswith("epochs")
            assert running[-1].startswith("epoch 1/3")  # the bars
            view.handle({"type": "stopped", "signal": "SIGINT", "epoch": 0, "step": 2, "step_in_epoch": 2})
            raise KeyboardInterrupt  # what the run does next: save, then raise
    assert screen(out.getvalue()) == [
        "training s8_bn (43,266 params) on cpu: 3 epochs of 4 steps, 256 train / 64 test images",
        "SIGINT received: stopping in epoch 1 after step 2/4 and saving a checkpoint"]


def test_an_error_erases_the_bars_a_finished_run_keeps_them():
    import io

    from rich.console import Console

    from cifarctl.ui.train_view import TrainView

    start = {"type": "start", "epoch": 1, "epochs": 2, "steps": 4, "model": "s8_bn", "params": 43266,
             "device": "cpu", "train_images": 256, "test_images": 64, "history": [], "resumed_step": 6,
             "step_in_epoch": 2}
    for fails in (True, False):
        out = io.StringIO()
        view = TrainView(Console(file=out, force_terminal=True, width=120, height=40), tty=True, chart=False)
        try:
            with view:
                view.handle(start)
                if fails:
                    raise RuntimeError("diverged")
        except RuntimeError:
            pass
        shown = screen(out.getvalue())
        assert shown[0].endswith("64 test images, resuming in epoch 2 at step 3/4")
        assert len(shown) == (1 if fails else 3), shown


# ------------------------------------------------------------------------ atomic checkpoints
def test_save_is_atomic_when_replace_fails(tmp_path, monkeypatch):
    from cifarctl import checkpoints

    path = tmp_path / "last.pt"
    checkpoints.save_checkpoint({"format": "cifarctl-checkpoint", "version": 1, "model": {}, "recipe": {},
                          "model_name": "x", "epoch": 1}, path)

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.os, "replace", boom)
    with pytest.raises(OSError):
        checkpoints.save_checkpoint({"format": "cifarctl-checkpoint", "version": 1, "model": {}, "recipe": {},
                              "model_name": "x", "epoch": 2}, path)
    monkeypatch.undo()
    assert checkpoints.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


# ------------------------------------------------------------------------ unreadable checkpoints
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _good(tmp_path: Path) -> Path:
    from cifarctl import checkpoints

    path = tmp_path / "good.pt"
    checkpoints.save_checkpoint({"format": "cifarctl-checkpoint", "version": 1, "model": {"w": torch.ones(64, 64)},
                          "recipe": {}, "model_name": "x", "epoch": 1}, path)
    return path


@pytest.mark.parametrize("damage,needle", [
    ("empty", "empty file: 0 bytes"),
    ("truncated", "truncated or corrupted"),
    ("bitflip", "truncated or corrupted"),
    ("tensor", "not a cifarctl checkpoint"),
    ("evil", "refused by weights_only loading"),
    ("text", "truncated or corrupted"),
])
def test_load_checkpoint_errors_are_one_line(tmp_path, damage, needle, cli):
    from cifarctl.errors import CheckpointError
    from cifarctl.checkpoints import load_checkpoint

    good = _good(tmp_path)
    bad = tmp_path / "last.pt"
    data = good.read_bytes()
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "bitflip":
        flipped = bytearray(data)
        for i in range(len(flipped) // 4, len(flipped), 97):
            flipped[i] ^= 0xFF
        bad.write_bytes(bytes(flipped))
    elif damage == "tensor":
        torch.save(torch.ones(3), bad)
    elif damage == "evil":
        torch.save({"format": "cifarctl-checkpoint", "payload": _Evil()}, bad)
    else:
        bad.write_text("hello")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    msg = str(info.value)
    assert msg.startswith(f"{bad}: ")
    assert needle in msg
    assert "\n" not in msg
    assert info.value.exit_code == 2
    res = cli("eval", bad)
    assert res.exit_code == 2
    assert needle in res.output
    assert "pwned" not in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1


def test_checkpoint_holds_everything_for_resume(reference):
    from cifarctl.checkpoints import load_checkpoint

    ckpt = load_checkpoint(reference / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "step", "best", "recipe",
            "model_name", "model_args", "classes", "normalize", "cifarctl_version"} <= set(ckpt)
    assert {"torch", "cuda", "numpy", "python", "generator"} <= set(ckpt["rng"])
    assert ckpt["best"]["epoch"] in (1, 2)
    assert ckpt["classes"][0] == "airplane"
    assert pickle.dumps(ckpt["rng"]["python"])  # plain data


def test_the_product_reads_no_test_variable():
    """The tests' faults come in through tests/faults/sitecustomize.py, patching the engine's
    step and the atomic writer: no CIFARCTL_TEST_* name appears in the package."""
    from pathlib import Path

    import cifarctl

    pkg = Path(cifarctl.__file__).parent
    assert not [p for p in pkg.rglob("*.py") if "CIFARCTL_TEST_" in p.read_text()]
