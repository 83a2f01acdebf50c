"""`cifarctl sweep` on Optuna: a grid over values and seeds, each trial an ordinary run
folder; a kill -9 of the driver and the same command again finish the sweep with no
trial trained twice; a changed grid is refused; compare and report read the folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("optuna")

CLI = [sys.executable, "-m", "cifarctl"]
# Two trials: enough for one finished and one interrupted when the driver is killed.
GRID = ["sweep", "s8_bn", "--set", "optimizer.lr=0.02,0.05", "--set", "epochs=2",
        "--set", "data.batch_size=64", "--set", "data.test_batch_size=100", "--data", "synthetic:256:100",
        "--device", "cpu"]


def _env():
    return {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}


def test_axes_and_names():
    from cifarctl.training.sweep import Spec, parse_axis, trial_name

    a = parse_axis("optimizer.lr=0.02,0.05")
    assert a.values == (0.02, 0.05)
    assert not a.is_range
    r = parse_axis("optimizer.lr=log:0.01..0.3")
    assert r.is_range
    assert r.log
    assert (r.low, r.high) == (0.01, 0.3)
    spec = Spec(["s8_bn"], [a], seeds=(1, 2))
    assert len(spec.grid()) == 4
    assert trial_name({"recipe": "s8_bn", "optimizer.lr": 0.02, "seed": 1}).startswith("s8_bn-lr=0.02-seed1-")
    with pytest.raises(Exception, match="--trials"):
        Spec(["s8_bn"], [r]).check()


@pytest.mark.slow
def test_kill_9_of_the_driver_then_the_same_command_finishes_with_no_trial_trained_twice(tmp_path, cli):
    out = tmp_path / "sw"
    log = open(tmp_path / "driver.txt", "w")
    proc = subprocess.Popen([*CLI, *GRID, "--out", str(out)], stdout=log, stderr=subprocess.STDOUT, env=_env())
    deadline = time.time() + 300
    try:  # kill -9 once one trial is done and the next has saved a checkpoint
        while time.time() < deadline:
            runs = sorted((out / "runs").glob("*/checkpoints/last.pt")) if (out / "runs").is_dir() else []
            done = [p for p in (out / "runs").glob("*/summary.json")
                    if json.loads(p.read_text() or "{}").get("status") == "completed"] if runs else []
            if done and len(runs) > len(done):
                break
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    time.sleep(2)  # the trial saw its parent die (SIGTERM) and saves
    res = subprocess.run([*CLI, *GRID, "--out", str(out)], capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "finished before" in res.stdout, res.stdout
    assert "resumed" in res.stdout, res.stdout
    runs = sorted(p for p in (out / "runs").iterdir() if p.is_dir())
    assert len(runs) == 2
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert summary["epochs_done"] == 2
        epochs = [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2], (run.name, epochs)  # no epoch trained twice
        assert (run / "log.txt").read_text().count("training s8_bn") <= 2  # started once, resumed at most once
    doc = json.loads(cli("compare", str(out), "--json").output)
    assert sorted((g["label"], g["n"]) for g in doc["groups"]) == [
        ("s8_bn [optimizer.lr=0.02]", 1), ("s8_bn [optimizer.lr=0.05]", 1)]
    again = subprocess.run([*CLI, *GRID, "--out", str(out)], capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0
    assert "2 finished before, 0 to run" in again.stdout
    other = cli(*[a.replace("0.02,0.05", "0.02,0.1") for a in GRID], "--out", str(out))
    assert other.exit_code == 2
    assert "another grid" in other.output


def test_sweep_without_optuna_says_how_to_install(monkeypatch, tmp_path, cli):
    import builtins

    real = builtins.__import__

    def no_optuna(name, *a, **kw):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    res = cli("sweep", "s8_bn", "--seeds", "1,2", "--out", str(tmp_path / "sw"))
    assert res.exit_code == 2
    assert 'pip install -e ".[sweep]"' in res.output


@pytest.mark.slow
def test_a_failed_trial_is_recorded_and_the_exit_code_says_so(tmp_path):
    out = tmp_path / "sw"
    res = subprocess.run([*CLI, "sweep", "s8_bn", "--set", "optimizer.lr=0.02,1e12", "--set", "epochs=2",
                          "--set", "scheduler={name: none}", "--set", "model_args.dropout=0",
                          "--data", "synthetic:256:64", "--set", "data.batch_size=64", "--device", "cpu",
                          "--out", str(out)], capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "failed (error: diverged" in res.stdout
    import optuna

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=json.loads((out / "sweep.json").read_text())["study"],
                              storage=JournalStorage(JournalFileBackend(str(out / "study.journal"))))
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "FAIL"]
    assert any("diverged" in v for k, v in study.user_attrs.items() if k.endswith("_reason"))
