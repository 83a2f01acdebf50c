"""Recovery does what the messages promise: resume from what exists, a hang-up saves and
stops like SIGTERM, a closed pipe does not kill a run, eval on a read-only run folder still
prints, long file names get a temp file that fits, CSV cells are never formulas."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import TINY

CLI = [sys.executable, "-m", "cifarctl"]


def _env():
    return {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def trained(tiny_copy):
    return tiny_copy


def test_resume_without_last_pt_starts_from_best_pt_and_says_so(trained, tmp_path, cli):
    run = tmp_path / "r"
    shutil.copytree(trained, run)
    (run / "checkpoints" / "last.pt").unlink()  # a full disk while last.pt was first written
    res = cli("train", "--resume", str(run), "--device", "cpu", "--set", "epochs=3", "--force")
    assert res.exit_code == 0, res.output
    assert "no checkpoints/last.pt; resuming from" in res.output


def test_csv_cells_are_never_formulas(trained, tmp_path, cli):
    run = tmp_path / "=cmd|' 'calc'!A0"
    shutil.copytree(trained, run)
    out = tmp_path / "runs.csv"
    res = cli("compare", str(run), "--export", "csv", "--out", str(out))
    assert res.exit_code == 0, res.output
    cells = [c for line in out.read_text().splitlines()[1:] for c in line.split(",")]
    assert not any(c.lstrip('"')[:1] in ("=", "+", "@") for c in cells), cells
    assert any(c.lstrip('"').startswith("'=cmd") for c in cells)


def test_eval_on_a_read_only_run_folder_prints_and_warns(trained, tmp_path, cli):
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    run = tmp_path / "r"
    shutil.copytree(trained, run)
    run.chmod(0o555)
    try:
        res = cli("eval", str(run))
    finally:
        run.chmod(0o755)
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output
    assert "warning: cannot write" in res.output


def test_a_long_out_name_gets_a_temp_file_that_fits(trained, tmp_path, cli):
    out = tmp_path / ("x" * 246 + ".csv")  # legal (<= 255 bytes); ".<name>.tmp-<pid>" would not be
    res = cli("compare", str(trained), "--export", "csv", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert out.is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow
def test_sighup_saves_and_stops_like_sigterm(tmp_path):
    runs = tmp_path / "runs"
    log = tmp_path / "out.txt"
    with open(log, "w") as f:
        proc = subprocess.Popen([*CLI, "train", "s8_bn", "--set", "data.source=synthetic:960:32", "--set",
                                 "data.batch_size=32", "--set", "epochs=3", "--device", "cpu", "--runs-dir",
                                 str(runs), "--name", "h"], stdout=f, stderr=subprocess.STDOUT, env=_env())
    try:
        deadline = time.time() + 120
        while "training s8_bn" not in log.read_text() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 129, log.read_text()
    summary = json.loads((runs / "h" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert "SIGHUP" in summary["error"]
    assert (runs / "h" / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_a_closed_pipe_does_not_stop_the_run(tmp_path):
    runs = tmp_path / "runs"
    train = subprocess.Popen([*CLI, "train", "s8_bn", *TINY, "--set", "epochs=4", "--device", "cpu",
                              "--runs-dir", str(runs), "--name", "p"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=_env())
    train.stdout.readline()  # `| head -1`
    train.stdout.close()
    train.wait(timeout=300)
    summary = json.loads((runs / "p" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_done"] == 4
    assert train.returncode == 0, train.stderr.read().decode()
    assert "Traceback" not in train.stderr.read().decode()
