"""cifarctl eval: reproduces the test accuracy logged for the checkpoint's epoch, tables, eval.json, options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def run(tiny_copy) -> Path:
    return tiny_copy


def last_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def test_eval_defaults_to_best_and_equals_its_epochs_test_acc(cli, run):
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    best_epoch = json.loads((run / "summary.json").read_text())["best_epoch"]
    best = rows[best_epoch - 1]
    assert best["test_acc"] == max(r["test_acc"] for r in rows)
    last_only = json.loads(cli("eval", run, "--which", "last", "--json").stdout)
    assert last_only["accuracy"] == last_metrics(run)["test_acc"]
    assert last_only["epoch"] == 2
    assert last_only["checkpoint"] == str(run / "checkpoints" / "last.pt")
    res = cli("eval", run, "--json")  # the default: best.pt, as `misclassified`
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["checkpoint"] == str(run / "checkpoints" / "best.pt")
    assert result["epoch"] == best_epoch
    assert result["accuracy"] == best["test_acc"]
    assert result["loss"] == pytest.approx(best["test_loss"], rel=1e-6)
    assert result["images"] == 64
    assert result["split"] == "test"
    assert json.loads((run / "eval.json").read_text())["accuracy"] == result["accuracy"]
    m = result["confusion"]
    assert len(m) == 10
    assert sum(map(sum, m)) == 64
    assert sum(m[i][i] for i in range(10)) == round(result["accuracy"] * 64 / 100)
    assert [c["class"] for c in result["per_class"]] == result["classes"]
    assert len(result["most_confused"]) <= 5
    counts = [c["count"] for c in result["most_confused"]]
    assert counts == sorted(counts, reverse=True)


def test_eval_tables_off_tty(cli, run):
    res = cli("eval", run)
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output
    for needle in ("accuracy", "per-class accuracy", "confusion matrix", "most confused", "airplane",
                   "eval.json"):
        assert needle in res.output


def test_eval_options(cli, run):
    flip = json.loads(cli("eval", run, "--tta", "flip", "--json").stdout)
    assert flip["tta"] == "flip"
    assert 0 <= flip["accuracy"] <= 100
    train = json.loads(cli("eval", run, "--split", "train", "--json").stdout)
    assert train["split"] == "train"
    assert train["images"] == 256
    other = json.loads(cli("eval", run, "--data", "synthetic:100:50", "--json").stdout)
    assert other["images"] == 50
    assert other["data"] == "synthetic:100:50"
    res = cli("eval", run, "--tta", "five-crop")
    assert res.exit_code == 2
    assert "--tta" in res.output
    res = cli("eval", run, "--which", "first")
    assert res.exit_code == 2


def test_eval_loose_checkpoint_writes_beside_it(cli, run, tmp_path):
    loose = tmp_path / "model.pt"
    shutil.copy(run / "checkpoints" / "last.pt", loose)
    res = cli("eval", loose, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accuracy"] == last_metrics(run)["test_acc"]
    assert (tmp_path / "eval.json").is_file()


def test_eval_missing_target(cli, tmp_path):
    res = cli("eval", tmp_path / "nothing")
    assert res.exit_code == 2
    assert "no such run folder or checkpoint" in res.output
    tmp_path.joinpath("empty").mkdir()
    res = cli("eval", tmp_path / "empty")
    assert res.exit_code == 2
    assert "no checkpoints/best.pt" in res.output
    (tmp_path / "early" / "checkpoints").mkdir(parents=True)  # stopped before its first epoch ended
    (tmp_path / "early" / "checkpoints" / "last.pt").touch()
    res = cli("eval", tmp_path / "early")
    assert res.exit_code == 2
    assert "no checkpoints/best.pt yet" in res.output
    assert "--which last" in res.output


def test_eval_and_misclassified_state_one_default_which(cli):
    import re

    for command in ("eval", "misclassified"):
        text = " ".join(cli(command, "--help").output.split())
        assert re.search(r"--which <[a-z|]+> Checkpoint of a run folder: best \(its best test accuracy\) or last "
                         r"\(the latest saved\)\. \[default: best\]", text), (command, text)


@pytest.mark.slow
def test_eval_on_jpeg_copy_matches_metrics(cli, jpeg_archive, tmp_path):
    res = cli("train", "s8_bn", "--set", f"data.source={jpeg_archive}", "--set", "epochs=1",
              "--set", "data.train_subset=200", "--set", "data.test_subset=200", "--set", "data.batch_size=50",
              "--runs-dir", tmp_path, "--name", "jpeg")
    assert res.exit_code == 0, res.output
    result = json.loads(cli("eval", tmp_path / "jpeg", "--json").stdout)
    assert result["images"] == 200
    assert result["accuracy"] == last_metrics(tmp_path / "jpeg")["test_acc"]


def test_a_non_finite_loss_is_null_in_strict_json():
    """A diverged checkpoint's NaN loss: eval.json stays strict JSON and the table says so."""
    import io
    from types import SimpleNamespace

    import torch
    from rich.console import Console

    from cifarctl.analysis.evaluate import evaluation
    from cifarctl.ui.tables import show_eval

    classes = ["a", "b"]
    inf = SimpleNamespace(classes=classes, checkpoint={"epoch": 1}, path=Path("x/checkpoints/best.pt"), run_dir=None,
                          recipe=SimpleNamespace(name="r"), model_name="m", source="synthetic", device="cpu")
    res = {"y": torch.tensor([0, 1, 1]), "preds": torch.tensor([0, 0, 1]), "tta": "none", "n": 3,
           "acc": 66.67, "loss": float("nan")}
    result = evaluation(inf, res, "test")
    assert result["loss"] is None
    assert result["confusion"] == [[1, 0], [1, 1]]
    json.dumps(result, allow_nan=False)
    buf = io.StringIO()
    show_eval(Console(file=buf, width=120), result)
    assert "loss not finite" in buf.getvalue()
