"""Data-parallel training on CPU: gloo, 2 processes, tiny synthetic data (cifarctl.training.distributed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import CLI, assert_complete, epoch_lines, only_run

from cifarctl.cli import launch
from cifarctl.training import distributed
from cifarctl.training.batches import Batches, count_steps, images_used

# the DDP run (a module fixture) serves three tests: one worker runs them
pytestmark = pytest.mark.xdist_group("test_ddp")

# 250 train images: batches of 64, 64, 64, 58 (29 per rank); 61 test images: shares of 31 and 30.
UNEVEN = ["--set", "data.source=synthetic:250:61", "--set", "data.batch_size=64", "--set", "epochs=2",
          "--set", "data.test_batch_size=16"]
# Without augmentation or dropout, and with GroupNorm (statistics of each image alone), 2
# processes compute what one does: EXACT runs train s8_gn.
EXACT = [*UNEVEN, "--set", "data.augment=[]", "--set", "model_args.dropout=0"]
# 15 steps an epoch: room for a stop agreed mid-epoch (the ranks agree every 4 steps, one step later)
EXACT15 = [*EXACT, "--set", "data.batch_size=16"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "cifarctl"]
TIMEOUT = 120  # a hang (ranks disagreeing on a collective) fails instead of blocking the suite


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=full, timeout=TIMEOUT)


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------ units
@pytest.mark.parametrize("n,world_size", [(61, 2), (64, 2), (10, 3), (7, 4), (3, 4), (1000, 1)])
def test_test_split_shares_cover_every_image_once(n, world_size):
    shares = [distributed.shard_range(n, r, world_size) for r in range(world_size)]
    covered = [i for lo, hi in shares for i in range(lo, hi)]
    assert covered == list(range(n))
    sizes = [hi - lo for lo, hi in shares]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n,batch,world_size,steps,used", [
    (250, 64, 1, 3, 192), (257, 64, 1, 4, 256),    # full batches only, whatever the processes
    (250, 64, 2, 3, 192), (255, 64, 2, 3, 192),
    (258, 64, 2, 4, 256), (259, 64, 4, 4, 256),
    (256, 64, 4, 4, 256), (100, 10, 4, 10, 100),
])
def test_steps_and_images_per_epoch(n, batch, world_size, steps, used):
    assert count_steps(n, batch, world_size) == steps
    assert images_used(n, batch, world_size) == used


def _batches(recipe, arrays, rank, world_size):
    g = torch.Generator().manual_seed(recipe.seed)
    return Batches(recipe, arrays, torch.device("cpu"), g, rank, world_size)


def test_ranks_split_each_global_batch_of_the_same_permutation():
    from cifarctl.data.sources import synthetic
    from cifarctl.recipe.load import load_recipe

    recipe = load_recipe("s8_bn", ["data.batch_size=64"])
    arrays = synthetic(251, 10)
    arrays.train_y[:] = range(251)  # labels as image ids
    single = _batches(recipe, arrays, 0, 1)
    one = [y.tolist() for _, y in single.plan().iterate()]
    plans = [_batches(recipe, arrays, r, 2).plan() for r in range(2)]
    per_rank = [[y.tolist() for _, y in p.iterate()] for p in plans]
    assert len(per_rank[0]) == len(per_rank[1]) == len(one) == 3
    for i, full in enumerate(one):
        a, b = per_rank[0][i], per_rank[1][i]
        assert len(a) == len(b) >= 2
        assert sorted(a + b) == sorted(full[:len(a) + len(b)])  # batch i of one process, split
    everything = [i for r in per_rank for batch in r for i in batch]
    assert len(everything) == len(set(everything)) == 192  # full batches only: 59 of 251 wait
    x0, x1 = (next(p.iterate())[0] for p in plans)
    assert x0.shape == x1.shape == (32, 3, 32, 32)


def test_batch_size_must_split_over_the_processes():
    from cifarctl.data.sources import synthetic
    from cifarctl.errors import UsageError
    from cifarctl.recipe.load import load_recipe

    recipe = load_recipe("s8_bn", ["data.batch_size=63"])
    with pytest.raises(UsageError, match="does not split over 2 processes"):
        _batches(recipe, synthetic(100, 10), 0, 2)


def test_nproc_relaunches_the_same_command_under_torchrun(cli, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(launch, "launch", lambda n, args: calls.append((n, args)) or 143)
    res = cli("train", "s8_bn", "--set", "epochs=1", "--set", "seed=3", "--nproc", "2",
              "--runs-dir", tmp_path, "--force")
    assert res.exit_code == 143  # the launcher's exit code
    assert calls == [(2, ["train", "s8_bn", "--set", "epochs=1", "--set", "seed=3", "--device", "auto",
                          "--runs-dir", str(tmp_path), "--force"])]
    cmd = launch.launch_command(2, ["train", "s8_bn"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                       "-m", "cifarctl", "train", "s8_bn"]
    assert not list(tmp_path.iterdir())  # nothing trained in this process


def test_resume_refuses_another_world_size_mid_epoch():
    from types import SimpleNamespace

    from cifarctl.errors import UsageError

    t = SimpleNamespace(world_size=1, steps_per_epoch=4)
    distributed.check_resume({"world_size": 2, "progress": None, "epoch": 1, "step": 4}, t, "last.pt")
    with pytest.raises(UsageError, match="mid-epoch by 2 process"):
        distributed.check_resume({"world_size": 2, "progress": {"step_in_epoch": 1}, "epoch": 1, "step": 5},
                                 t, "last.pt")
    with pytest.raises(UsageError, match="take 4 per epoch"):
        distributed.check_resume({"world_size": 2, "progress": None, "epoch": 1, "step": 3}, t, "last.pt")


# ------------------------------------------------------------------------ 2 processes, end to end
@pytest.mark.slow
def test_nproc_2_writes_one_complete_run_evaluated_on_the_whole_test_split(tmp_path):
    runs = tmp_path / "runs"
    res = run([*CLI, "train", "s8_bn", *UNEVEN, "--set", "sync_bn=true", "--nproc", "2", "--runs-dir", runs])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sync_bn applies to CUDA only" in res.stdout
    assert "BatchNorm per process" in res.stdout
    run_dir = only_run(runs)
    summary = assert_complete(run_dir, epochs=2)
    assert summary["world_size"] == 2
    assert json.loads((run_dir / "env.json").read_text())["world_size"] == 2
    assert [ln.split()[1] for ln in epoch_lines(res.stdout)] == ["1/2", "2/2"]  # printed once, by rank 0
    assert res.stdout.count("run folder") == 1
    assert res.stdout.count("\ntarget ") == 1
    assert "250 train / 61 test images" in res.stdout
    assert "data-parallel: 2 processes (gloo)" in res.stdout
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2
    assert ckpt["step"] == 6  # 3 full batches of 64 an epoch
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the keys of a single-process run

    res = run([*CLI, "eval", run_dir, "--json"])
    assert res.returncode == 0, res.stdout + res.stderr
    ev = json.loads(res.stdout)
    assert ev["images"] == 61
    last = rows(run_dir)[ev["epoch"] - 1]  # eval takes best.pt
    assert ev["accuracy"] == pytest.approx(last["test_acc"], abs=1e-9)
    assert ev["loss"] == pytest.approx(last["test_loss"], rel=1e-5)


def _uninterrupted(tmp_path_factory, args) -> Path:
    runs = tmp_path_factory.mktemp("ddp-exact")
    res = run([*TORCHRUN, "train", "s8_gn", *args, "--runs-dir", runs, "--name", "ref"])
    assert res.returncode == 0, res.stdout + res.stderr
    return runs / "ref"


@pytest.fixture(scope="module")
def ddp_exact15(tmp_path_factory) -> Path:
    """An uninterrupted torchrun run of EXACT15 on 2 processes."""
    return _uninterrupted(tmp_path_factory, EXACT15)


@pytest.mark.slow
def test_torchrun_matches_one_process(ddp_exact15, cli, tmp_path):
    ddp_exact = ddp_exact15
    res = cli("train", "s8_gn", *EXACT15, "--runs-dir", tmp_path, "--name", "one")
    assert res.exit_code == 0, res.output
    one = tmp_path / "one"
    a, b = weights(ddp_exact), weights(one)
    assert a.keys() == b.keys()
    for k in a:  # the same batches, per-image statistics: equal up to float summation order
        torch.testing.assert_close(a[k].double(), b[k].double(), atol=2e-3, rtol=1e-2, msg=k)
    for x, y in zip(rows(ddp_exact), rows(one)):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-2)
        assert x["test_loss"] == pytest.approx(y["test_loss"], rel=1e-2)


@pytest.mark.slow
def test_torchrun_interrupted_mid_epoch_then_resumed_equals_uninterrupted(ddp_exact15, tmp_path):
    ddp_exact = ddp_exact15
    runs = tmp_path / "runs"
    res = run([*TORCHRUN, "train", "s8_gn", *EXACT15, "--runs-dir", runs],
              CIFARCTL_TEST_STOP_AT_STEP="20")  # epoch 2, step 5: agreed after step 9
    assert res.returncode != 0
    assert res.stderr.count("stopped by SIGINT in epoch 2 after step 9/15") == 1, res.stderr  # rank 0's only
    assert "error:" not in res.stderr, res.stderr
    run_dir = only_run(runs)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 24
    assert ckpt["progress"]["step_in_epoch"] == 9
    assert ckpt["world_size"] == 2

    res = run([*TORCHRUN, "train", "--resume", run_dir])
    assert res.returncode == 0, res.stdout + res.stderr
    assert only_run(runs) == run_dir
    ref, got = weights(ddp_exact), weights(run_dir)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    drop = ("seconds", "train_seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows(run_dir)] == \
           [{k: v for k, v in r.items() if k not in drop} for r in rows(ddp_exact)]


@pytest.mark.slow
def test_nan_on_every_rank_stops_all_with_exit_3(tmp_path):
    runs = tmp_path / "runs"
    res = run([*CLI, "train", "s8_bn", *UNEVEN, "--nproc", "2", "--runs-dir", runs],
              CIFARCTL_TEST_NAN_AT_STEP="3")
    assert res.returncode == 3, res.stdout + res.stderr  # rank 0's code, not torchrun's 1
    assert res.stderr.count("error: diverged at step 3") == 1
    summary = json.loads((only_run(runs) / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["epochs_done"] == 0


@pytest.mark.slow
def test_speedrun_whose_whitening_bias_freezes_mid_run_trains_on_2_processes(tmp_path):
    """speedrun_net stops training a parameter after `whiten_bias_epochs`: DDP must cope."""
    runs = tmp_path / "runs"
    res = run([*CLI, "train", "speedrun", "--set", "data.source=synthetic:256:40", "--set", "data.batch_size=64",
               "--set", "epochs=2", "--set", "model_args.whiten_bias_epochs=1", "--set", "data.test_batch_size=20",
               "--set", "model_args.widths=[16,32,32]", "--nproc", "2", "--runs-dir", runs, "--device", "cpu"])
    assert res.returncode == 0, res.stdout + res.stderr
    run_dir = only_run(runs)
    assert_complete(run_dir, epochs=2)
    assert [ln.split()[1] for ln in epoch_lines(res.stdout)] == ["1/2", "2/2"]


def _two_nodes(args: list, tmp: Path, **env: str) -> list[subprocess.CompletedProcess]:
    """``torchrun --nnodes 2 --nproc-per-node 1`` twice on this machine (node ranks 0 and 1,
    static rendezvous over loopback): what two machines of one job run."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    procs = []
    for node in (0, 1):
        out = open(tmp / f"node{node}.txt", "w")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port),
               "-m", "cifarctl", *map(str, args)]
        procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full), out))
    done = []
    for p, out in procs:
        p.wait(timeout=TIMEOUT)
        out.close()
        done.append(subprocess.CompletedProcess(p.args, p.returncode, Path(out.name).read_text(), ""))
    return done


@pytest.mark.slow
def test_two_nodes_write_one_run_folder_and_resume_to_the_single_node_result(ddp_exact15, tmp_path):
    runs = tmp_path / "runs"
    first = _two_nodes(["train", "s8_gn", *EXACT15, "--runs-dir", runs, "--name", "mn"], tmp_path,
                       CIFARCTL_TEST_STOP_AT_STEP="20")
    assert all(p.returncode != 0 for p in first), [p.stdout[-800:] for p in first]
    assert [p.name for p in runs.iterdir()] == ["mn"]  # one folder, written by global rank 0 only
    assert sum(p.stdout.count("run folder") for p in first) == 1
    ckpt = torch.load(runs / "mn" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2
    assert ckpt["progress"]["step_in_epoch"] == 9
    again = _two_nodes(["train", "--resume", runs / "mn"], tmp_path)
    assert all(p.returncode == 0 for p in again), [p.stdout[-800:] for p in again]
    ref, got = weights(ddp_exact15), weights(runs / "mn")
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    drop = ("seconds", "train_seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows(runs / "mn")] == \
           [{k: v for k, v in r.items() if k not in drop} for r in rows(ddp_exact15)]
