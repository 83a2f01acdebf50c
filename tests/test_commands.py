"""Every command is a thin wrapper: it parses its options and calls one library function
with them (fastapi-cli's tests). The library call is replaced by a stand-in that records
its arguments; nothing is trained, loaded or evaluated here."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture
def calls(monkeypatch):
    """``calls.patch("module.attr", returns)``: replace a library function, record its calls."""
    seen: list[tuple[str, tuple, dict]] = []

    def patch(target: str, returns=None):
        module, _, attr = target.rpartition(".")

        def fake(*args, **kwargs):
            seen.append((attr, args, kwargs))
            return returns(*args, **kwargs) if callable(returns) else returns

        monkeypatch.setattr(module + "." + attr, fake)

    return SimpleNamespace(patch=patch, seen=seen)


def test_train_passes_every_option_to_run_training(cli, calls, tmp_path):
    calls.patch("cifarctl.training.run.run_training", {"status": "completed"})
    res = cli("train", "s8_bn", "--set", "epochs=1", "--set", "data.batch_size=32", "--data", "synthetic",
              "--device", "cpu", "--runs-dir", tmp_path, "--name", "n", "--seed", "3", "--resume", tmp_path / "r",
              "--force")
    assert res.exit_code == 0, res.output
    (name, args, kw), = calls.seen
    assert name == "run_training" and args == ("s8_bn",)
    assert kw["overrides"] == ["epochs=1", "data.batch_size=32"] and kw["data"] == "synthetic"
    assert kw["device"] == "cpu" and kw["runs_dir"] == str(tmp_path) and kw["name"] == "n"
    assert kw["seed"] == 3 and kw["resume"] == str(tmp_path / "r") and kw["force"] is True
    assert kw["progress"] is True and kw["view"] is not None


def test_eval_passes_its_options_to_evaluate_checkpoint(cli, calls):
    calls.patch("cifarctl.analysis.evaluate.evaluate_checkpoint", {"accuracy": 50.0})
    res = cli("eval", "runs/x", "--data", "synthetic", "--split", "train", "--tta", "flip", "--which", "best",
              "--device", "cpu", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"accuracy": 50.0}
    assert calls.seen == [("evaluate_checkpoint", ("runs/x",), dict(data="synthetic", split="train", tta="flip",
                                                                   which="best", device="cpu"))]


def test_misclassified_passes_its_options_to_find_misclassified(cli, calls, tmp_path):
    result = SimpleNamespace(run_dir=tmp_path, checkpoint=tmp_path / "checkpoints" / "best.pt",
                             to_dict=lambda: {"items": []})
    calls.patch("cifarctl.analysis.misclassified.find_misclassified", result)
    calls.patch("cifarctl.analysis.misclassified.write_grid", lambda r, out, **kw: out)
    res = cli("misclassified", tmp_path, "--n", "4", "--sort", "loss", "--true", "cat", "--pred", "dog",
              "--layer", "conv5", "--which", "last", "--data", "synthetic", "--device", "cpu", "--json")
    assert res.exit_code == 0, res.output
    (name, args, kw), (_, grid_args, grid_kw) = calls.seen
    assert name == "find_misclassified" and args == (str(tmp_path),)
    assert kw == dict(n=4, sort="loss", true="cat", pred="dog", gradcam=True, layer="conv5", which="last",
                      data_source="synthetic", device="cpu")  # --layer turns Grad-CAM on
    assert grid_args == (result, tmp_path / "misclassified_gradcam.png")
    assert grid_kw == {"user_path": False}  # the default place: not a path the user gave


def test_lr_find_resolves_the_name_and_passes_the_sweep(cli, calls, tmp_path):
    from cifarctl.training.lrfind import analyse

    sweep = analyse([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0], num_iter=3, start_lr=1e-3, end_lr=1e-1)
    calls.patch("cifarctl.training.lrfind.run_lr_find", sweep)
    res = cli("lr-find", "s8_bn", "--set", "data.train_subset=64", "--data", "synthetic", "--optimizer", "adam",
              "--weight-decay", "0.01", "--batch-size", "16", "--start-lr", "1e-5", "--num-iter", "5",
              "--device", "cpu", "--runs-dir", tmp_path, "--json")
    assert res.exit_code == 0, res.output
    (name, (recipe,), kw), = calls.seen
    assert recipe.name == "s8_bn" and recipe.data.train_subset == 64 and recipe.model_args == {"dropout": 0.05}
    assert str(kw["device"]) == "cpu"  # resolved once, so the header can name it
    assert kw == dict(data_source="synthetic", device=kw["device"], optimizer="adam", weight_decay=0.01, batch_size=16,
                      progress=kw["progress"], start_lr=1e-5, end_lr=10.0, num_iter=5, step_mode="exp")
    assert Path(json.loads(res.output)["out_dir"]).parent == tmp_path / "lr-find"


def test_summary_resolves_the_name_and_passes_the_recipe(cli, calls):
    calls.patch("cifarctl.analysis.layers.summarize_recipe", SimpleNamespace(to_dict=lambda: {"layers": []}))
    calls.patch("cifarctl.analysis.rules.check_rules", [])
    res = cli("summary", "s8_bn", "--depth", "2", "--input-size", "3,64,64", "--json")
    assert res.exit_code == 0, res.output
    (name, (recipe,), kw), (rules, (same,), _) = calls.seen
    assert recipe.name == "s8_bn" and kw == dict(input_size=(3, 64, 64), depth=2) and same is recipe
    assert json.loads(res.output) == {"layers": [], "recipe": "s8_bn", "model_args": {"dropout": 0.05},
                                      "rules": []}


def test_models_passes_the_pattern(cli, calls):
    calls.patch("cifarctl.analysis.layers.model_rows", [])
    res = cli("models", "s8*", "--json")
    assert res.exit_code == 0 and json.loads(res.output) == []
    assert calls.seen == [("model_rows", ("s8*",), {})]


def test_data_passes_the_source(cli, calls):
    from cifarctl.data import synthetic

    calls.patch("cifarctl.data.load_cifar", synthetic(20, 10))
    res = cli("data", "synthetic:20:10", "--json")
    assert res.exit_code == 0, res.output
    assert calls.seen == [("load_cifar", ("synthetic:20:10",), {})]
    assert json.loads(res.output)["train"] == 20


def test_recipes_passes_the_overrides(cli, calls):
    from cifarctl.recipe import load_recipe

    calls.patch("cifarctl.recipe.load_recipe", lambda ref, overrides=(): load_recipe(ref, overrides))
    res = cli("recipes", "s8_bn", "--set", "epochs=3", "--json")
    assert res.exit_code == 0, res.output
    assert calls.seen == [("load_recipe", ("s8_bn", ("epochs=3",)), {})]
    assert json.loads(res.output)["epochs"] == 3


def test_compare_passes_the_folders(cli, calls, tmp_path):
    calls.patch("cifarctl.analysis.compare.collect_runs", ([], []))
    res = cli("compare", tmp_path / "a", tmp_path / "b", "--sort", "time")
    assert res.exit_code == 2 and "no runs with metrics" in res.output
    assert calls.seen == [("collect_runs", ([tmp_path / "a", tmp_path / "b"],), {})]
