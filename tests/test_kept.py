"""What a second look at a run reuses: the predictions an evaluation kept
(eval-predictions-<split>.npz), the run's own curves.png, and augmentation pipelines
already checked. Each is reused only when it stands for what would be computed anew."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

KEPT = "eval-predictions-test.npz"


@pytest.fixture(scope="module")
def run(tiny_copy) -> Path:
    return tiny_copy


@pytest.fixture
def fresh(run, tmp_path) -> Path:
    """A copy of the run (times kept) without kept predictions."""
    dst = tmp_path / "r"
    shutil.copytree(run, dst)
    for p in dst.glob("eval*"):
        p.unlink()
    return dst


def _eval(cli, run: Path, *args: str) -> dict:
    res = cli("eval", run, "--json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _no_predicting(monkeypatch):
    """Any new inference pass fails the test: what follows must read kept predictions."""
    import cifarctl.analysis.inference as inference

    def refuse(*a, **k):
        raise AssertionError("predicted again instead of reading the kept predictions")

    monkeypatch.setattr(inference, "predict", refuse)


def _same(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "cached"} == {k: v for k, v in b.items() if k != "cached"}


# ------------------------------------------------------------------------ kept predictions
def test_eval_keeps_its_predictions_and_reads_them_back(cli, fresh, monkeypatch):
    first = _eval(cli, fresh)
    assert first["cached"] is False
    assert (fresh / KEPT).is_file()
    with np.load(fresh / KEPT) as z:
        meta = json.loads(str(z["meta"]))
        assert z["preds"].shape == (64,)
        assert z["probs"].shape == (64, 10)
        assert z["losses"].shape == (64,)
        assert meta["key"]["split"] == "test"
        assert meta["key"]["images"] == 64
        assert np.allclose(z["probs"].sum(axis=1), 1, atol=1e-5)
        assert (z["probs"].argmax(axis=1) == z["preds"]).all()
        # the predictions eval.json counted: its confusion matrix's columns
        assert np.bincount(z["preds"], minlength=10).tolist() == np.asarray(first["confusion"]).sum(0).tolist()
    _no_predicting(monkeypatch)
    second = _eval(cli, fresh)
    assert second["cached"] is True
    assert _same(first, second)
    table = cli("eval", fresh)  # the table says where its numbers come from
    assert table.exit_code == 0
    assert "(predictions read back from eval-predictions-test.npz" in table.output


def test_anything_else_predicts_again(cli, fresh):
    base = _eval(cli, fresh)
    flip = _eval(cli, fresh, "--tta", "flip")  # another augmentation: another pass, which replaces the kept one
    assert flip["cached"] is False
    assert flip["tta"] == "flip"
    again = _eval(cli, fresh)
    assert again["cached"] is False
    assert _same(again, base)
    train = _eval(cli, fresh, "--split", "train")  # each split keeps its own
    assert train["cached"] is False
    assert (fresh / "eval-predictions-train.npz").is_file()
    assert _eval(cli, fresh)["cached"] is True


def test_a_changed_checkpoint_predicts_again(cli, fresh):
    import torch

    before = _eval(cli, fresh)
    path = fresh / "checkpoints" / "best.pt"
    ckpt = torch.load(path, weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.ndim == 4)
    ckpt["model"][name] = torch.zeros_like(ckpt["model"][name])  # a first-layer conv of zeros
    torch.save(ckpt, path)
    after = _eval(cli, fresh)
    assert after["cached"] is False
    assert after["confusion"] != before["confusion"] or after["loss"] != before["loss"]


def test_other_data_predicts_again(cli, fresh):
    before = _eval(cli, fresh)
    other = _eval(cli, fresh, "--data", "synthetic:256:48")
    assert other["cached"] is False
    assert other["data"] != before["data"]
    assert other["images"] == 48
    assert _eval(cli, fresh)["cached"] is False  # and back: the run's own data, predicted again


def test_a_damaged_file_is_one_warning_and_a_new_pass(cli, fresh, caplog):
    first = _eval(cli, fresh)
    (fresh / KEPT).write_bytes(b"not an npz")
    caplog.clear()
    again = _eval(cli, fresh)
    assert again["cached"] is False
    assert _same(first, again)
    assert [r.getMessage() for r in caplog.records] == [
        f"warning: {fresh / KEPT} is unreadable (not an .npz file); predicting again"]
    assert _eval(cli, fresh)["cached"] is True  # written anew


def test_a_folder_that_cannot_keep_them_still_evaluates(cli, fresh, monkeypatch, caplog):
    from cifarctl import fsutil
    from cifarctl.errors import WriteError

    real = fsutil.write_atomic

    def no_npz(path, data, **kw):
        if str(path).endswith(".npz"):
            raise WriteError(f"cannot write {path}: read-only file system")
        return real(path, data, **kw)

    monkeypatch.setattr(fsutil, "write_atomic", no_npz)
    res = _eval(cli, fresh)
    assert res["cached"] is False
    assert (fresh / "eval.json").is_file()
    assert not (fresh / KEPT).exists()
    assert any("predictions not kept" in r.getMessage() and "read-only" in r.getMessage() for r in caplog.records)


def test_misclassified_reads_the_kept_predictions(cli, fresh, monkeypatch, tmp_path):
    res = cli("misclassified", fresh, "--json", "--out", tmp_path / "a.png")
    assert res.exit_code == 0, res.output
    predicted = json.loads(res.stdout)
    assert (fresh / KEPT).is_file()  # misclassified keeps its pass too
    _no_predicting(monkeypatch)
    res = cli("misclassified", fresh, "--json", "--out", tmp_path / "b.png")
    assert res.exit_code == 0, res.output
    read = json.loads(res.stdout)
    assert read["items"] == predicted["items"]
    assert read["total_wrong"] == predicted["total_wrong"]


def test_report_reads_the_kept_predictions_and_writes_the_same(cli, fresh, monkeypatch, tmp_path):
    res = cli("report", fresh, "-o", tmp_path / "a", "--device", "cpu")
    assert res.exit_code == 0, res.output
    _no_predicting(monkeypatch)
    res = cli("report", fresh, "-o", tmp_path / "b", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "read the predictions an earlier evaluation kept" in res.output

    def body(d):
        return [ln for ln in (d / "README.md").read_text().splitlines() if not ln.startswith("_Generated")]

    assert body(tmp_path / "a") == body(tmp_path / "b")
    for png in (tmp_path / "a" / "images").glob("*.png"):
        assert png.read_bytes() == (tmp_path / "b" / "images" / png.name).read_bytes(), png.name
