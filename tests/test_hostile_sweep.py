"""Hostile inputs to the sweep's files and caps, in-process (trials by the fake_train trainer of
test_sweep_bookkeeping): a log, journal or tensorboard/ that is a link, FIFO or device; a
damaged journal; bad --storage URLs; --out a run folder or a file; worker and grid caps;
null values, int ranges, huge seeds; the rules block and a batch that cannot fit."""

from __future__ import annotations

import json
import os
import stat

import pytest
from helpers import TINY
from test_sweep_bookkeeping import Q

optuna = pytest.importorskip("optuna")

from cifarctl.training import sweep as sw  # noqa: E402

LR = ["--set", "optimizer.lr=0.02,0.05"]


def _one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    text = res.output.strip()
    assert "Traceback" not in text, text
    assert all(n in text for n in needles), text


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("kind", ["symlink", "fifo", "device"])
def test_a_trials_log_that_is_not_a_file_is_never_followed_or_opened(kind, tmp_path, cli, fake_train):
    out = tmp_path / "sw"
    (out / "logs").mkdir(parents=True)
    log = out / "logs" / f"{sw.trial_name({'recipe': 's8_bn', 'epochs': 1})}.txt"
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    if kind == "symlink":
        log.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(log)
    else:
        os.mknod(log, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null, in tmp
    res = cli("sweep", "s8_bn", *Q, "--set", "optimizer.lr=0.02", "--set", "epochs=1,2", "--out", out)
    assert res.exit_code == 1, res.output
    assert "log" in res.output, res.output  # that trial failed, in one line
    assert target.read_text() == "keep me\n"
    assert os.path.lexists(log)
    assert len(fake_train.calls) == 1  # the other trial ran


@pytest.mark.parametrize("kind", ["fifo", "folder", "symlink", "device", "random", "middle"])
def test_a_damaged_journal_is_one_line_saying_how_to_go_on(kind, tmp_path, cli, fake_train):
    out = tmp_path / "sw"
    out.mkdir()
    j = out / "study.journal"
    if kind == "fifo":
        os.mkfifo(j)
    elif kind == "folder":
        j.mkdir()
    elif kind == "symlink":
        (tmp_path / "elsewhere.journal").write_text("")
        j.symlink_to(tmp_path / "elsewhere.journal")
    elif kind == "device":
        os.mknod(j, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    elif kind == "random":
        j.write_bytes(bytes(range(256)) * 8)
    else:
        j.write_text('{"op_code": 0, "worker_id": "x", "study_name": "a", "directions": [1]}\n{"torn\n{}\n')
    res = cli("sweep", "s8_bn", *Q, *LR, "--out", out)
    _one_line_error(res, "study.journal", "move it aside")
    assert fake_train.calls == []


def test_a_torn_last_line_of_the_journal_is_cut_and_the_sweep_goes_on(tmp_path, cli, fake_train):
    out = tmp_path / "sw"
    assert cli("sweep", "s8_bn", *Q, *LR, "--out", out).exit_code == 0
    j = out / "study.journal"
    with open(j, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "dead", "tri')  # a writer killed mid-line
    res = cli("sweep", "s8_bn", *Q, *LR, "--out", out)
    assert res.exit_code == 0, res.output
    assert "2 finished before, 0 to run" in res.output, res.output
    assert "cut its torn last line" in res.output
    assert j.read_bytes().endswith(b"\n")
    assert cli("sweep", "s8_bn", *Q, *LR, "--out", out).exit_code == 0  # and again, after appends


@pytest.mark.parametrize("url, needle", [
    ("http://example.com/db", "not a database"), ("file:///tmp/x.db", "not a database"), ("", "is empty"),
    ("not a url", "not a URL"), ("bogus://x", "cannot open it"), ("postgresql://u:secret@h/db", "cannot open it"),
    ("sqlite:////nonexistent-folder-xyz/a.db", "cannot open it"),
])
def test_a_bad_storage_url_is_one_line(url, needle, tmp_path, cli, fake_train):
    res = cli("sweep", "s8_bn", *Q, *LR, "--storage", url, "--out", tmp_path / "sw")
    _one_line_error(res, "--storage", needle)
    assert "secret" not in res.output
    assert fake_train.calls == []
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("kind", ["run", "file", "fifo"])
def test_out_must_be_a_sweep_folder(kind, tmp_path, cli, fake_train):
    out = tmp_path / "x"
    if kind == "run":
        out.mkdir()
        (out / "summary.json").write_text("{}")
        (out / "metrics.jsonl").write_text("")
    elif kind == "file":
        out.write_text("x")
    else:
        os.mkfifo(out)
    res = cli("sweep", "s8_bn", *Q, *LR, "--out", out)
    _one_line_error(res, "--out", {"run": "a run folder", "file": "a file", "fifo": "a FIFO"}[kind])
    if kind == "run":
        assert fake_train.calls == []
        assert not (out / "runs").exists()


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_tensorboard_folder_that_is_not_the_runs_own_stops_the_resume(kind, tmp_path, cli, monkeypatch):
    pytest.importorskip("tensorboard")
    runs = tmp_path / "runs"
    monkeypatch.setenv("CIFARCTL_TEST_STOP_AT_STEP", "2")
    res = cli("train", "s8_bn", *TINY, "--runs-dir", runs, "--name", "r")
    assert res.exit_code != 0, res.output
    assert "stopped" in res.output, res.output
    monkeypatch.delenv("CIFARCTL_TEST_STOP_AT_STEP")
    tb = runs / "r" / "tensorboard"
    import shutil

    shutil.rmtree(tb)
    outside = tmp_path / "outside"
    outside.mkdir()
    if kind == "symlink":
        tb.symlink_to(outside)
    else:
        tb.write_text("x")
    before = json.loads((runs / "r" / "summary.json").read_text())["status"]
    res = cli("train", "--resume", runs / "r")
    _one_line_error(res, "tensorboard", "move it aside")
    assert list(outside.iterdir()) == []
    assert json.loads((runs / "r" / "summary.json").read_text())["status"] == before == "interrupted"


# ------------------------------------------------------------------ caps and values
@pytest.mark.parametrize("gpus, needle", [(",", "expected GPU ids"), (" ", "expected GPU ids"),
                                          ("-1,-2", "expected GPU ids"), ("0,0", "given twice"),
                                          (",".join(map(str, range(200))), "at most 64")])
def test_gpus_are_validated_and_capped(gpus, needle, tmp_path, cli, fake_train):
    res = cli("sweep", "s8_bn", *Q, *LR, "--gpus", gpus, "--out", tmp_path / "sw")
    _one_line_error(res, "--gpus", needle)
    assert fake_train.calls == []
    assert not (tmp_path / "sw").exists()


def test_the_grid_size_is_capped_before_it_is_built(tmp_path, cli, fake_train, monkeypatch):
    monkeypatch.setattr(sw.Spec, "grid", lambda self: pytest.fail("the grid was built"))
    many = ",".join(f"{i}e-5" for i in range(1, 201))
    res = cli("sweep", "s8_bn", *Q, "--set", f"optimizer.lr={many}", "--set", f"optimizer.weight_decay={many}",
              "--out", tmp_path / "sw")
    _one_line_error(res, "40,000 points", "at most 10,000")


def test_null_and_empty_grid_values_reach_training_as_none(tmp_path, cli, fake_train):
    with pytest.raises(Exception, match="given twice"):
        sw.parse_axis("model_args.dropout=null,~")  # one value, twice
    a = sw.parse_axis("optimizer.weight_decay=null,0.001")
    assert a.values == (None, 0.001)
    args = sw.train_args({"recipe": "s8_bn", "optimizer.weight_decay": None}, sw.Spec(["s8_bn"], [a]))
    from cifarctl.recipe.load import parse_override

    assert parse_override(args[args.index("--set") + 1]) == (["optimizer", "weight_decay"], None)
    assert parse_override("a=" + sw.set_value("a/b"))[1] == "a/b"
    assert parse_override("a=" + sw.set_value(" x"))[1] == " x"


@pytest.mark.parametrize("text", ["k=int:0.1..0.9", "k=int:1.5..3"])
def test_int_ranges_need_whole_bounds(text):
    with pytest.raises(Exception, match="whole-number"):
        sw.parse_axis(text)


@pytest.mark.parametrize("argv", [
    ["train", "s8_bn", *TINY, "--seed", str(2**64)],
    ["train", "s8_bn", *TINY, "--set", f"seed={2**64}"],
    ["sweep", "s8_bn", "--seeds", f"1,{2**64}", "--out", "{tmp}/sw"],
])
def test_seeds_beyond_what_torch_takes_are_refused_when_parsed(argv, tmp_path, cli, fake_train):
    res = cli(*[a.replace("{tmp}", str(tmp_path)) for a in argv], "--runs-dir" if argv[0] == "train" else "--data",
              tmp_path / "runs" if argv[0] == "train" else "synthetic:64:64")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output, res.output
    assert "Overflow" not in res.output, res.output
    assert not (tmp_path / "runs").exists()
    assert fake_train.calls == []


def test_a_mistyped_set_key_is_refused_before_the_first_trial(tmp_path, cli, fake_train):
    res = cli("sweep", "s8_bn", *Q, "--set", "optimizer.lrr=0.02,0.05", "--out", tmp_path / "sw")
    assert res.exit_code == 2, res.output
    assert "lrr" in res.output, res.output
    assert fake_train.calls == []
    assert not (tmp_path / "sw").exists()
    res = cli("sweep", "s8_bn", *Q, "--set", "epochz=1", *LR, "--out", tmp_path / "sw")
    assert res.exit_code == 2
    assert "epochz" in res.output
    assert fake_train.calls == []
    res = cli("sweep", "s8_bn", "no_such_recipe", *Q, *LR, "--out", tmp_path / "sw")
    assert res.exit_code == 2
    assert "no_such_recipe" in res.output
    assert fake_train.calls == []
    assert cli("sweep", "s8_bn", *Q, *LR, "--out", tmp_path / "sw").exit_code == 0  # the folder is not tied


def test_an_eval_batch_that_cannot_fit_is_reported_before_training(tmp_path, cli, monkeypatch):
    import torch

    from cifarctl.training import engine

    real = engine.evaluate

    def evaluate(model, x, y, *, batch_size, **kw):  # the device's memory: 64 images at once
        if min(len(y), batch_size) > 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 5.20 GiB")
        return real(model, x, y, batch_size=batch_size, **kw)

    monkeypatch.setattr(engine, "evaluate", evaluate)
    res = cli("train", "s8_bn", *TINY, "--set", "data.source=synthetic:256:100",
              "--set", "data.test_batch_size=10000000", "--runs-dir", tmp_path / "runs", "--name", "r")
    assert res.exit_code == 2, res.output
    assert "data.test_batch_size=10000000: one evaluation pass of 100 images does not fit" in res.output
    assert "lower data.test_batch_size" in res.output
    assert "epoch 1" not in res.output
    assert not (tmp_path / "runs" / "r" / "metrics.jsonl").exists()


def test_a_mapping_value_still_reaches_training_as_a_mapping():
    from cifarctl.recipe.load import parse_override

    fixed = sw.parse_axis("scheduler={name: none}")
    assert parse_override("scheduler=" + sw.set_value(fixed.values[0]))[1] == {"name": "none"}
    assert parse_override("k=" + sw.set_value("[1, 2]"))[1] == [1, 2]
