"""The reliability and security battery (issue 6): nothing lost, nothing executed, every
bad input a clear error. One test (or one parametrized group) per battery item, numbered
as in the README's table; each runs in well under a minute on 2 CPU cores.

Faults are real where it matters: ``kill -9`` is a real SIGKILL (the child sends it to
itself at a chosen step through tests/faults, ``CIFARCTL_TEST_KILL_AT_STEP``), SIGTERM/SIGINT come from
outside, "disk full" is ``RLIMIT_FSIZE`` in the child. Parts already covered elsewhere
are not repeated here: signal exit codes and the simulated-SIGINT resume
(tests/test_resume.py), library-level data and recipe errors (test_data.py,
test_recipes.py), hand-written broken run folders for compare (test_compare.py).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CLI, TINY
from PIL import Image

from cifarctl import CLASSES

# every item runs cifarctl in child processes; the module fixtures (reference, twins) serve
# most tests: one xdist worker runs them all
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_reliability")]

HOOKS = ("CIFARCTL_TEST_STOP_AT_STEP", "CIFARCTL_TEST_NAN_AT_STEP", "CIFARCTL_TEST_SLOW_SAVE",
         "CIFARCTL_TEST_KILL_AT_STEP", "CIFARCTL_TEST_WAIT_AT_STEP")
TIMING = ("seconds", "train_seconds", "images_per_s")
CPU = ["--device", "cpu"]
# The per-image albumentations path in 2 DataLoader worker processes (the device path
# has no workers).
ALB2 = ["--set", "data.augment_backend=albumentations", "--set", "data.workers=2"]


# ------------------------------------------------------------------------ helpers
def child_env(**hooks: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in HOOKS}
    env.update(NO_ALBUMENTATIONS_UPDATE="1", PYTHONUNBUFFERED="1", COLUMNS="200", **hooks)
    return env


class Proc:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def __repr__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


def run_cli(tmp: Path, *args, env: dict | None = None, preexec_fn=None, timeout: int = 240) -> Proc:
    """``cifarctl ARGS`` in a child process. Output goes to files, not pipes: DataLoader
    workers orphaned by a kill -9 would hold a pipe open for seconds."""
    tmp.mkdir(parents=True, exist_ok=True)
    n = len(list(tmp.glob("out-*.txt")))
    out, err = tmp / f"out-{n}.txt", tmp / f"err-{n}.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.run([*CLI, *map(str, args)], stdout=fo, stderr=fe, env=env or child_env(),
                              preexec_fn=preexec_fn, timeout=timeout)
    return Proc(proc.returncode, out.read_text(), err.read_text())


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def assert_one_line_error(text: str, *needles: str) -> str:
    lines = error_lines(text)
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def weights(run: Path, name: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / name, weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob(".*") if ".tmp-" in p.name]


def train_in_process(runs_dir: Path, *sets: str, name: str | None = None, resume: Path | None = None) -> dict:
    from cifarctl.training.run import run_training

    if resume is not None:
        return run_training(resume=resume, device="cpu")
    return run_training("s8_bn", overrides=list(sets), runs_dir=runs_dir, name=name, device="cpu")


def kill_after_temp_files(proc, ckpts: Path, count: int, out, log: Path, wait: float = 0.0) -> None:
    """SIGKILL ``proc`` once ``count`` checkpoint temp files have appeared (by name, one at a
    time: a save's temp file lives until it is renamed), ``wait`` seconds later."""
    seen, before = 0, set()
    deadline = time.time() + 180
    try:
        while seen < count:
            assert proc.poll() is None, log.read_text()
            assert time.time() < deadline, log.read_text()
            now = {p.name for p in ckpts.iterdir() if ".tmp-" in p.name} if ckpts.is_dir() else set()
            seen += len(now - before)
            before = now
            time.sleep(0.02)
        time.sleep(wait)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()


def sets(args: list[str]) -> list[str]:
    """``["--set", "a=1", "--set", "b=2"]`` -> ``["a=1", "b=2"]``."""
    return args[1::2]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted TINY runs (2 epochs of 4 steps), made once per module on demand:
    ``reference("device")`` or ``reference("albumentations")`` (2 workers)."""
    root = tmp_path_factory.mktemp("reference")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            extra = ALB2 if kind == "albumentations" else []
            train_in_process(root, *sets(TINY), *sets(extra), name=kind)
            made[kind] = root / kind
        return made[kind]

    return get


def assert_equals_reference(run: Path, ref: Path) -> None:
    assert_same_weights(weights(ref), weights(run))
    assert metrics(run) == metrics(ref)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_done"] == 2
    assert not temp_files(run), temp_files(run)


# ------------------------------------------------------------------------ 1. kill -9
@pytest.mark.slow
@pytest.mark.parametrize("workers", [0], ids=["device-0-workers"])  # the workers' path: item 3's Ctrl-C
def test_01_kill_9_between_epochs_and_mid_epoch_then_resume_is_bitwise_equal(tmp_path, reference, workers):
    from cifarctl.checkpoints import load_checkpoint

    kind = "albumentations" if workers else "device"
    extra = ALB2 if workers else ["--set", "data.workers=0"]
    run = tmp_path / "runs" / "r"
    # kill -9 between epochs: right after epoch 1 and its checkpoint, before step 5
    p = run_cli(tmp_path, "train", "s8_bn", *TINY, *extra, *CPU, "--runs-dir", run.parent, "--name", "r",
                env=child_env(CIFARCTL_TEST_KILL_AT_STEP="5"))
    assert p.returncode == -signal.SIGKILL, p
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["progress"]) == (1, 4, None)
    # resume, and kill -9 again at a random step in the middle of epoch 2
    seed = random.randrange(2**32)  # printed on failure: rerun with random.Random(seed)
    step = random.Random(seed).randint(6, 8)
    p = run_cli(tmp_path, "train", "--resume", run, *CPU, env=child_env(CIFARCTL_TEST_KILL_AT_STEP=str(step)))
    assert p.returncode == -signal.SIGKILL, (f"seed {seed}", step, p)
    assert "resuming at the start of epoch 2" in p.stdout, p
    assert json.loads((run / "summary.json").read_text())["status"] == "running"  # nobody could say otherwise
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    # resume to the end: bitwise the uninterrupted run
    train_in_process(run.parent, resume=run)
    assert_equals_reference(run, reference(kind))
    assert len(json.loads((run / "env.json").read_text())["resumes"]) == 2


# ------------------------------------------------------------------------ 2. kill -9 during a save
@pytest.mark.slow
def test_02b_kill_9_while_a_background_save_is_in_flight_and_the_next_epoch_trains(tmp_path):
    """Epoch-end files are written by a background thread while the next epoch trains: a
    kill -9 during epoch 2's save (slowed to 2 s) leaves every checkpoint loadable, and the
    resumed run is bitwise the uninterrupted one."""
    from cifarctl.checkpoints import load_checkpoint

    runs = tmp_path / "runs"
    three = ["--set", "epochs=3"]
    train_in_process(runs, *sets(TINY), *sets(three), name="ref")
    out = open(tmp_path / "out.txt", "w")
    proc = subprocess.Popen([*CLI, "train", "s8_bn", *TINY, *three, *CPU, "--runs-dir", str(runs), "--name", "r"],
                            stdout=out, stderr=subprocess.STDOUT, env=child_env(CIFARCTL_TEST_SLOW_SAVE="2"))
    ckpts = runs / "r" / "checkpoints"
    # temp files seen: epoch 1's best.pt and last.pt, then epoch 2's first; epoch 3 trains meanwhile
    kill_after_temp_files(proc, ckpts, 3, out, tmp_path / "out.txt", wait=1.0)
    run = runs / "r"
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(ckpts / name)["epoch"] in (1, 2)
    assert load_checkpoint(ckpts / "last.pt")["epoch"] == 1
    train_in_process(runs, resume=run)
    assert_same_weights(weights(runs / "ref"), weights(run))
    assert metrics(run) == metrics(runs / "ref")
    assert not temp_files(run)


@pytest.mark.slow
def test_02_kill_9_during_a_slow_checkpoint_save_every_checkpoint_loads_and_resume_continues(tmp_path, reference):
    from cifarctl.checkpoints import load_checkpoint

    summary = json.loads((reference("device") / "summary.json").read_text())
    assert summary["best_epoch"] == 2, "needs a TINY run whose epoch 2 is its best: 4 saves in all"
    runs = tmp_path / "runs"
    out = open(tmp_path / "out.txt", "w")
    proc = subprocess.Popen([*CLI, "train", "s8_bn", *TINY, *CPU, "--runs-dir", str(runs), "--name", "r"],
                            stdout=out, stderr=subprocess.STDOUT, env=child_env(CIFARCTL_TEST_SLOW_SAVE="1"))
    ckpts = runs / "r" / "checkpoints"
    # Saves of epoch 1 (best.pt, last.pt), then of epoch 2: kill during the last one of all,
    # while its temp file is complete but not yet renamed. The saves of an epoch follow each
    # other at once: count the temp files by name.
    kill_after_temp_files(proc, ckpts, 4, out, tmp_path / "out.txt")
    run = runs / "r"
    on_disk = sorted(p.name for p in ckpts.iterdir() if p.name.endswith(".pt"))
    assert on_disk == ["best.pt", "last.pt"]
    loaded = {name: load_checkpoint(ckpts / name) for name in on_disk}  # every checkpoint loads
    assert [p.name for p in temp_files(run)] == [f".last.pt.tmp-{proc.pid}"]  # the save it was in
    # best.pt is written before last.pt: last.pt, the newest complete state of the whole run,
    # has not got to epoch 2 (else resume would find the run over, with best.pt stale)
    assert loaded["last.pt"]["epoch"] == 1
    assert loaded["best.pt"]["epoch"] == 2
    train_in_process(runs, resume=run)  # redoes epoch 2, and removes the dead process's temp file
    log = (run / "log.txt").read_text()
    assert f"resumed from {ckpts / 'last.pt'} at epoch {loaded['last.pt']['epoch']}" in log
    assert_equals_reference(run, reference("device"))
    summary = json.loads((run / "summary.json").read_text())
    assert load_checkpoint(ckpts / "best.pt")["epoch"] == summary["best_epoch"]


# ------------------------------------------------------------------------ 3. SIGTERM / Ctrl-C
def _start(tmp_path: Path, args: list[str], **env: str) -> tuple[subprocess.Popen, Path]:
    """``train`` in a child process (its own session, output to a file), once it has
    printed ``fault: waiting at step 3``: it holds step 3 (of 4 in epoch 1) until a signal."""
    out = tmp_path / "out.txt"
    f = open(out, "w")
    proc = subprocess.Popen([*CLI, "train", "s8_bn", *args], stdout=f, stderr=subprocess.STDOUT,
                            env=child_env(CIFARCTL_TEST_WAIT_AT_STEP="3", **env), start_new_session=True)
    f.close()
    deadline = time.time() + 120
    while "fault: waiting at step 3" not in out.read_text():
        assert proc.poll() is None, out.read_text()
        assert time.time() < deadline, out.read_text()
        time.sleep(0.02)
    return proc, out


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"], ids=["sigterm-device", "ctrl-c-group-albumentations-2-workers"])
def test_03_sigterm_and_ctrl_c_save_exit_143_130_and_resume_bitwise(tmp_path, reference, how):
    from cifarctl.checkpoints import load_checkpoint

    runs = tmp_path / "runs"
    extra = ALB2 if how == "Ctrl-C" else []
    proc, out = _start(tmp_path, [*TINY, *extra, *CPU, "--runs-dir", str(runs), "--name", "r"])
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:  # what a terminal does: SIGINT to the whole foreground group, workers included
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    text = out.read_text()
    name = "SIGTERM" if how == "SIGTERM" else "SIGINT"
    assert proc.returncode == (143 if how == "SIGTERM" else 130), text
    assert f"{name} received: stopping in epoch 1 after step 3/4" in text, text
    assert f"stopped by {name} in epoch 1 after step 3/4: saved" in text
    assert "--resume" in text
    assert "Traceback" not in text, text
    assert "error:" not in text, text  # a stop that was asked for
    run = runs / "r"
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 3
    assert ckpt["progress"]["step_in_epoch"] == 3  # the step it was in, finished
    train_in_process(runs, resume=run)
    assert_equals_reference(run, reference("albumentations" if extra else "device"))


# ------------------------------------------------------------------------ 4. disk full
def test_04_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, reference, monkeypatch):
    from cifarctl.checkpoints import load_checkpoint
    from cifarctl.training.run import TrainingInterrupted

    runs = tmp_path / "runs"
    monkeypatch.setenv("CIFARCTL_TEST_STOP_AT_STEP", "4")  # epoch 1, saved: last.pt is ~390 kB
    with pytest.raises(TrainingInterrupted):
        train_in_process(runs, *sets(TINY), name="r")
    monkeypatch.delenv("CIFARCTL_TEST_STOP_AT_STEP")
    run = runs / "r"
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    before = {p: p.read_bytes() for p in (last, best)}
    assert len(before[last]) > 200_000

    def small_disk():  # no file may grow past 64 kB; EFBIG instead of the SIGXFSZ kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    p = run_cli(tmp_path, "train", "--resume", run, *CPU, preexec_fn=small_disk)
    assert p.returncode == 1, p
    # epoch 2 is the best so far: best.pt is the first file that no longer fits
    line = assert_one_line_error(p.stderr, f"cannot write {best} (File too large", "intact",
                                 f"cifarctl train --resume {run}")
    for path in (last, best):
        assert path.read_bytes() == before[path]
        assert load_checkpoint(path)["epoch"] == 1
    assert not temp_files(run), temp_files(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == line[len("error: "):]
    # space is back: the run continues and ends as if nothing happened
    train_in_process(runs, resume=run)
    assert_equals_reference(run, reference("device"))


# ------------------------------------------------------------------------ 5 and 12: twin runs
FROZEN_CLOCK = """\
import datetime, sys
import cifarctl.runs
class Frozen(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 11, 22, 12, 0, 0, tzinfo=tz)
cifarctl.runs.datetime = Frozen  # run folders are named by the second: make it the same one
from cifarctl.cli import main
main()
"""


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """Two `train` processes started together, at the same (frozen) second, into one runs
    folder, with the same recipe and seed, on the albumentations path with 2 workers each."""
    tmp = tmp_path_factory.mktemp("twins")
    runs = tmp / "runs"
    args = ["train", "s8_bn", *TINY, *ALB2, *CPU, "--runs-dir", str(runs)]
    procs, outs = [], []
    for i in range(2):
        outs.append(tmp / f"out-{i}.txt")
        with open(outs[-1], "w") as f:
            procs.append(subprocess.Popen([sys.executable, "-c", FROZEN_CLOCK, *args], stdout=f,
                                          stderr=subprocess.STDOUT, env=child_env()))
    codes = [p.wait(timeout=300) for p in procs]
    return runs, codes, [o.read_text() for o in outs]


def test_05_two_runs_started_in_the_same_second_get_separate_folders(twins):
    runs, codes, outs = twins
    assert codes == [0, 0], outs
    folders = sorted(p.name for p in runs.iterdir())
    assert folders == ["s8_bn-20261122-120000", "s8_bn-20261122-120000-2"]
    announced = sorted(ln.split("run folder ", 1)[1].strip() for out in outs for ln in out.splitlines()
                       if ln.startswith("run folder "))
    assert announced == sorted(str(runs / f) for f in folders)  # each process wrote its own
    for f in folders:
        run = runs / f
        assert [m["epoch"] for m in metrics(run)] == [1, 2]  # nothing interleaved
        log = (run / "log.txt").read_text()
        assert log.count("training s8_bn") == 1
        assert [ln.split()[1] for ln in log.splitlines() if ln.startswith("epoch ")] == ["1/2", "2/2"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert summary["run_dir"] == str(run)
        assert "resumes" not in json.loads((run / "env.json").read_text())
        assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 8
        assert not temp_files(run)


# ------------------------------------------------------------------------ 6. damaged checkpoints
def _damage(good: bytes, how: str) -> bytes:
    if how == "zero-byte":
        return b""
    if how == "truncated":
        return good[: len(good) * 2 // 3]
    # one flipped bit in the middle of the largest tensor: the zip structure stays valid
    import io
    import struct

    with zipfile.ZipFile(io.BytesIO(good)) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", good[info.header_offset + 26: info.header_offset + 30])
    at = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    flipped = bytearray(good)
    flipped[at] ^= 0x04
    return bytes(flipped)


@pytest.mark.parametrize("how,needle", [
    ("zero-byte", "empty file: 0 bytes"),
    ("truncated", "truncated or corrupted"),
    ("bit-flip", "checksum"),
])
def test_06_damaged_checkpoint_is_one_line_naming_the_file_for_every_command(tmp_path, reference, cli, how, needle):
    run = tmp_path / "run"
    shutil.copytree(reference("device"), run)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(_damage(last.read_bytes(), how))
    (run / "checkpoints" / "best.pt").unlink()
    for args in (["eval", run, "--which", "last"], ["misclassified", run, "--which", "last"],
                 ["train", "--resume", run]):
        res = cli(*args)
        assert res.exit_code == 2, (args, res.output)
        assert_one_line_error(res.output, f"{last}: ", needle)
    # compare never opens checkpoints: the run is listed; the file itself is not a run folder
    res = cli("compare", run, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["runs"][0]["name"] == "run", res.output
    res = cli("compare", last)
    assert res.exit_code == 2
    assert_one_line_error(res.output, str(last), "checkpoint file, not a run folder")
    if how == "truncated":  # a real process: no traceback, unless --debug
        p = run_cli(tmp_path, "eval", last)
        assert p.returncode == 2, p
        assert p.stdout == "", p
        assert_one_line_error(p.stderr, str(last), needle)
        p = run_cli(tmp_path, "--debug", "eval", last)
        assert p.returncode != 0, p
        assert "Traceback" in p.stderr, p
        assert "CheckpointError" in p.stderr, p


def test_06_resume_falls_back_to_an_intact_best_pt_and_says_so(tmp_path, reference, cli, monkeypatch):
    from cifarctl.training.run import TrainingInterrupted

    runs = tmp_path / "runs"
    monkeypatch.setenv("CIFARCTL_TEST_STOP_AT_STEP", "6")  # mid-epoch 2: last.pt is newer than best.pt
    with pytest.raises(TrainingInterrupted):
        train_in_process(runs, *sets(TINY), name="r")
    monkeypatch.delenv("CIFARCTL_TEST_STOP_AT_STEP")
    run = runs / "r"
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(_damage(last.read_bytes(), "truncated"))
    res = cli("train", "--resume", run)
    assert res.exit_code == 0, res.output
    assert f"{last}: not a readable checkpoint" in res.output
    assert "resuming from" in res.output
    assert f"resumed from {run / 'checkpoints' / 'best.pt'} at epoch 1" in (run / "log.txt").read_text()
    assert_equals_reference(run, reference("device"))


# ------------------------------------------------------------------------ 7. malicious pickles
class _Sentinel:
    """Unpickling this creates a file: proof that code ran."""

    path = ""

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_files(tmp_path: Path, sentinel: Path) -> dict[str, Path]:
    _Sentinel.path = str(sentinel)
    payload = {"format": "cifarctl-checkpoint", "version": 1, "model": {}, "recipe": {}, "model_name": "s8_bn",
               "epoch": 1, "rng": {"python": _Sentinel()}}
    files = {}
    files["zip"] = tmp_path / "zip.pt"
    torch.save(payload, files["zip"])
    files["legacy"] = tmp_path / "legacy.pt"
    torch.save(payload, files["legacy"], _use_new_zipfile_serialization=False)
    files["pickle"] = tmp_path / "pickle.pt"
    files["pickle"].write_bytes(pickle.dumps(payload, protocol=2))
    return files


@pytest.mark.parametrize("kind", ["zip", "legacy", "pickle"])
def test_07_malicious_pickle_is_refused_by_every_command_and_never_runs(tmp_path, reference, cli, kind):
    sentinel = tmp_path / "PWNED"
    evil = _evil_files(tmp_path, sentinel)[kind]
    assert not sentinel.exists()
    run = tmp_path / "run"
    shutil.copytree(reference("device"), run)
    shutil.copy(evil, run / "checkpoints" / "last.pt")  # best.pt stays intact: no fallback for this
    for args in (["eval", evil], ["misclassified", evil], ["eval", run, "--which", "last"],
                 ["misclassified", run, "--which", "last"], ["train", "--resume", run]):
        res = cli(*args)
        assert res.exit_code == 2, (args, res.output)
        assert_one_line_error(res.output, "refused by weights_only loading")
        assert not sentinel.exists(), args
    res = cli("compare", run)  # compare reads no checkpoint at all
    assert res.exit_code == 0, res.output
    assert not sentinel.exists()
    pickle.loads(pickle.dumps(_Sentinel()))  # the payload is live: this does create it
    assert sentinel.exists()


def test_07_checkpoints_and_their_rng_state_load_with_weights_only(tmp_path, reference):

    from cifarctl.checkpoints import capture_rng, restore_rng, save_checkpoint

    ckpt = torch.load(reference("device") / "checkpoints" / "last.pt", weights_only=True)
    assert {"torch", "numpy", "python", "generator"} <= set(ckpt["rng"])
    gen = torch.Generator().manual_seed(5)
    torch.rand(3, generator=gen)
    save_checkpoint({"rng": capture_rng(gen)}, tmp_path / "rng.pt")
    draw = lambda: (torch.rand(4), np.random.rand(4).tolist(), random.random(), torch.rand(4, generator=gen))  # noqa: E731
    expected = draw()
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"], gen)
    got = draw()
    assert torch.equal(expected[0], got[0])
    assert expected[1:3] == got[1:3]
    assert torch.equal(expected[3], got[3])
    # no code path loads pickles any other way: ruff's banned-api rules (pyproject.toml), run by test_lint.py


# ------------------------------------------------------------------------ 8. broken run folders
def test_08_compare_marks_or_skips_broken_run_folders_and_goes_on(tmp_path, reference, cli):
    ref = reference("device")
    root = tmp_path / "runs"
    for name in ("good", "cut", "nosummary", "future", "halfsummary", "nometrics", "pytag"):
        shutil.copytree(ref, root / name)
    cut = root / "cut" / "metrics.jsonl"
    text = cut.read_text()
    cut.write_text(text[: len(text) - 40])  # killed in the middle of writing epoch 2's line
    (root / "nosummary" / "summary.json").unlink()
    recipe = (root / "future" / "recipe.yaml").read_text()
    (root / "future" / "recipe.yaml").write_text(recipe.replace("schema_version: 1", "schema_version: 99"))
    half = root / "halfsummary" / "summary.json"
    half.write_text(half.read_text()[:100])
    (root / "nometrics" / "metrics.jsonl").unlink()
    sentinel = tmp_path / "PWNED"
    (root / "pytag" / "recipe.yaml").write_text(
        f"name: !!python/object/apply:builtins.open ['{sentinel}', 'w']\n" + recipe)
    res = cli("compare", root, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    marks = {r["name"]: r["marks"] for r in doc["runs"]}
    assert set(marks) == {"good", "cut", "nosummary", "future", "halfsummary", "pytag"}
    assert marks["good"] == []
    assert "truncated metrics line 2" in marks["cut"]
    assert "no summary.json" in marks["nosummary"]
    assert any(m.startswith("schema newer") for m in marks["future"])
    assert "summary.json unparsable" in marks["halfsummary"]
    assert "recipe.yaml unparsable" in marks["pytag"]
    assert not sentinel.exists()
    by = {r["name"]: r for r in doc["runs"]}
    assert by["cut"]["epochs"] == 1
    assert by["good"]["epochs"] == 2
    assert [s["path"] for s in doc["skipped"]] == [str(root / "nometrics")]
    res = cli("compare", root)  # the table says the same
    assert res.exit_code == 0
    assert "truncated metrics line 2" in res.output
    assert "skipped" in res.output


# ------------------------------------------------------------------------ 9. bad recipes
BAD_RECIPE = """\
name: broken
model: s8_bnn
epochs: 0
seeed: 3
optimizer: {name: sgd, lr: -0.1}
data:
  batch_size: many
  augment:
    - HorizontalFlipp: {p: 0.5}
    - CoarseDropout: {max_holes: 1, max_height: 8, max_width: 8, fill_value: 0}
"""


@pytest.mark.parametrize("case", ["everything-at-once", "python-tag", "empty", "batch-larger-than-data"])
def test_09_bad_recipe_exit_2_every_error_at_once_nothing_created(tmp_path, cli, case):
    sentinel = tmp_path / "PWNED"
    recipe = tmp_path / "r.yaml"
    extra: list[str] = []
    if case == "everything-at-once":
        recipe.write_text(BAD_RECIPE)
        needles = ["epochs:", "seeed: unknown key (did you mean 'seed'?)", "optimizer.lr:", "data.batch_size:",
                   "model: unknown model 's8_bnn'", "'s8_bn'", "data.augment[0]", "HorizontalFlip",
                   "data.augment[1]", "max_holes", "fill_value"]
    elif case == "python-tag":
        recipe.write_text(f"name: t\nmodel: s8_bn\nepochs: 1\n"
                          f"description: !!python/object/apply:builtins.open ['{sentinel}', 'w']\n")
        needles = ["line 4", "python"]
    elif case == "empty":
        recipe.write_text("")
        needles = ["empty"]
    else:
        recipe.write_text("name: t\nmodel: s8_bn\nepochs: 1\ndata: {batch_size: 64}\n")
        extra = ["--data", "synthetic:50:20"]
        needles = ["data.batch_size", "64", "50 train"]
    runs = tmp_path / "runs"
    res = cli("train", recipe, *extra, "--runs-dir", runs)
    assert res.exit_code == 2, res.output
    line = assert_one_line_error(res.output, str(recipe), *needles)
    assert not runs.exists(), list(runs.rglob("*"))
    assert not sentinel.exists()
    if case == "everything-at-once":
        assert line.count(";") >= 7, line


# ------------------------------------------------------------------------ 10. bad data
def _image_folder(root: Path, n_train: int = 2, n_test: int = 1) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def _good_jpeg() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _small_png() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


DATA_CASES = ["missing-path", "wrong-layout-archive", "corrupt-jpeg", "not-an-image", "truncated-png",
              "class-missing-from-test", "no-network"]


@pytest.mark.parametrize("case", DATA_CASES)
def test_10_bad_data_one_line_expected_layout_and_no_broken_cache(tmp_path, cli, monkeypatch, case):
    import tarfile

    from cifarctl.data import sources

    cache = tmp_path / "cache"
    monkeypatch.setenv("CIFARCTL_DATA_DIR", str(cache))
    monkeypatch.delenv("CIFARCTL_DATA", raising=False)
    data = tmp_path / "data"
    bad_file = None
    if case == "missing-path":
        needles = [f"data path {data} does not exist", "expected", "train/<class>/"]
    elif case == "wrong-layout-archive":
        (tmp_path / "flat" / "images").mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "flat" / "images" / "0.png")
        data = tmp_path / "flat.tar.gz"
        with tarfile.open(data, "w:gz") as tf:
            tf.add(tmp_path / "flat", arcname="flat")
        needles = [str(data), "expected", "train/<class>/"]
    elif case == "class-missing-from-test":
        _image_folder(data)
        shutil.rmtree(data / "test" / "truck")
        needles = [str(data), "truck in train/ but not in test/"]
    elif case == "no-network":
        # nothing answers on port 9 of this machine: the download fails as it would offline
        monkeypatch.setattr(sources, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
        data = "cifar10"
        needles = ["cannot download CIFAR-10 (no network?)", str(cache), "CIFARCTL_DATA"]
    else:
        _image_folder(data)
        name, blob, needles = {
            "corrupt-jpeg": ("bad.jpg", _good_jpeg()[:300], ["cannot decode image"]),
            "not-an-image": ("gray.png", b"GIF89a but not really an image", ["cannot decode image"]),
            "truncated-png": ("small.png", _small_png()[:40], ["cannot decode image"]),
        }[case]
        bad_file = data / "train" / "cat" / name
        bad_file.write_bytes(blob)
        needles = [str(bad_file), *needles]
    runs = tmp_path / "runs"
    common = ["--set", "epochs=1", "--set", "data.batch_size=8", "--set", "data.test_batch_size=10",
              "--set", "data.workers=0", "--runs-dir", runs, *CPU]
    res = cli("train", "s8_bn", "--data", data, *common)
    assert res.exit_code == 2, res.output
    assert_one_line_error(res.output, *needles)
    assert not runs.exists()
    leftovers = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert leftovers == [], leftovers  # nothing half-written in the cache
    if bad_file is not None:  # fixed data: decoded afresh, not from a broken cache
        bad_file.unlink()
        res = cli("train", "s8_bn", "--data", data, *common)
        assert res.exit_code == 0, res.output
        assert "20 train / 10 test images" in res.output
        cached = [p for p in cache.rglob("*") if p.is_file()]
        assert len(cached) == 1, cached
        assert cached[0].suffix == ".npz", cached


# ------------------------------------------------------------------------ 11. NaN
def test_11_nan_at_step_k_stops_says_diverged_keeps_last_good_checkpoint_exit_3(tmp_path, cli, monkeypatch):
    from cifarctl.checkpoints import load_checkpoint

    runs = tmp_path / "runs"
    p = run_cli(tmp_path, "train", "s8_bn", *TINY, *CPU, "--runs-dir", runs, "--name", "r",
                env=child_env(CIFARCTL_TEST_NAN_AT_STEP="7"))
    assert p.returncode == 3, p
    assert_one_line_error(p.stderr, "diverged at step 7", "lower the learning rate")
    run = runs / "r"
    summary = json.loads((run / "summary.json").read_text())
    # found at the epoch end (the loss guards are read there, not in the step), named by its first step
    assert summary["status"] == "diverged"
    assert summary["steps"] == 8
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(run / "checkpoints" / name)
        assert (ckpt["epoch"], ckpt["step"]) == (1, 4)
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert [m["epoch"] for m in metrics(run)] == [1]
    # in the first epoch, before any checkpoint: the same error, and no checkpoint claimed
    monkeypatch.setenv("CIFARCTL_TEST_NAN_AT_STEP", "3")
    res = cli("train", "s8_bn", *TINY, *CPU, "--runs-dir", runs, "--name", "early")
    assert res.exit_code == 3
    line = assert_one_line_error("\n".join(ln for ln in res.output.splitlines() if "error" in ln),
                                 "diverged at step 3")
    assert "checkpoint" not in line
    assert json.loads((runs / "early" / "summary.json").read_text())["steps"] == 4
    assert not (runs / "early" / "checkpoints" / "last.pt").exists()


# ------------------------------------------------------------------------ 12. determinism
def test_12_same_recipe_and_seed_twice_give_identical_metrics(twins):
    runs, codes, outs = twins
    assert codes == [0, 0], outs
    a, b = sorted(p for p in runs.iterdir())
    assert metrics(a) == metrics(b)
    raw = [(a / "metrics.jsonl").read_text().splitlines(), (b / "metrics.jsonl").read_text().splitlines()]
    assert all(set(json.loads(r)) - set(TIMING) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"}
               for r in raw[0])
    assert_same_weights(weights(a), weights(b))
