"""LR range test: suggestions, restoring the model, output files, the lr-find command."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cifarctl.errors import CifarctlError, UsageError
from cifarctl.training.lrfind import (
    analyse,
    make_out_dir,
    choose_max_lr,
    run_lr_find,
    suggest,
    valley_index,
    write_lr_find,
)
from cifarctl.recipe import load_recipe

# s8_bn on 128 synthetic images, batch 32: a few seconds of CPU per sweep.
TINY = ["data.train_subset=128", "data.test_subset=20", "data.batch_size=32"]


def _curve(n: int = 100, start: float = 1e-7, end: float = 10.0):
    """A textbook range-test curve: flat, a descent around 1e-3..1e-1, then a blow-up."""
    lrs = np.geomspace(start, end, n)
    x = np.log10(lrs)
    loss = 2.3 - 1.0 / (1 + np.exp(-(x + 2) * 3)) + np.where(x > -0.5, (x + 0.5) ** 2 * 4, 0)
    return list(lrs), list(loss)


def _within(result) -> None:
    for name, v in result.suggestions.items():
        if v is not None:
            assert math.isfinite(v), name
            assert result.start_lr <= v <= result.end_lr, (name, v)
    if result.recommended is not None:
        assert result.start_lr <= result.recommended <= result.end_lr


# ------------------------------------------------------------------ pure suggestions
def test_suggestions_on_a_textbook_curve():
    lrs, loss = _curve()
    r = analyse(lrs, loss, loss, num_iter=100, start_lr=1e-7, end_lr=10)
    _within(r)
    s = r.suggestions
    assert all(v is not None for v in s.values())
    assert 1e-4 < s["valley"] < 1e-1 and 1e-4 < s["steepest"] < 1e-1
    # minimum/10 is a tenth of the lr at the lowest loss
    i = int(np.argmin(loss[10:95])) + 10
    assert s["min_div_10"] == pytest.approx(lrs[i] / 10)
    assert r.recommended == s["valley"] and r.recommended_by == "valley"
    assert r.reason.startswith("valley")
    assert not r.notes


def test_valley_index_is_fastais_rule():
    # longest decreasing subsequence: 3.1 (index 1) down to 2.4 (index 8), 8 points; fastai
    # takes start = end - length = 0 and goes int(8/3) + int(8/6) = 3 points down from there
    losses = [3.0, 3.1, 3.0, 2.9, 2.8, 2.7, 2.6, 2.5, 2.4, 5.0]
    assert valley_index(losses) == 3
    assert valley_index([1.0, 2.0, 3.0]) == 0  # nothing decreases


def test_short_sweep_says_what_is_unavailable():
    lrs, loss = _curve(8)
    s, notes = suggest(lrs, loss, 8, 1e-7, 10)
    assert s["steepest"] is None
    assert s["valley"] is not None and s["min_div_10"] is not None
    assert any("steepest" in n and "17" in n for n in notes)
    s, notes = suggest(lrs[:2], loss[:2], 8, 1e-7, 10)
    assert all(v is None for v in s.values())
    r = analyse(lrs[:2], loss[:2], loss[:2], num_iter=8, start_lr=1e-7, end_lr=10)
    assert r.recommended is None and "no suggestion" in r.reason


def test_non_finite_tail_and_clipping():
    lrs, loss = _curve(60)
    loss[40:] = [float("nan")] * 20
    r = analyse(lrs, loss, loss, num_iter=100, start_lr=1e-7, end_lr=10, diverged=True)
    _within(r)
    assert r.diverged and "diverged" in r.message
    assert json.loads(json.dumps(r.to_dict()))["smoothed_loss"][50] is None
    # the minimum in the first points: minimum/10 falls below start_lr and is clipped
    rising = list(np.linspace(1, 3, 30))
    r = analyse(list(np.geomspace(1e-3, 1, 30)), rising, rising, num_iter=30, start_lr=1e-3, end_lr=1)
    _within(r)
    assert r.suggestions["min_div_10"] == pytest.approx(1e-3)
    assert any("clipped" in n for n in r.notes)


def test_bad_arguments_are_usage_errors():
    recipe = load_recipe("s8_bn", TINY)
    with pytest.raises(UsageError, match="start_lr"):
        run_lr_find(recipe, data_source="synthetic", start_lr=1.0, end_lr=0.1)
    with pytest.raises(UsageError, match="step_mode"):
        run_lr_find(recipe, data_source="synthetic", step_mode="cosine")


# ------------------------------------------------------------------ the real sweep
def test_sweep_restores_the_model_and_writes_files(tmp_path, data_cache_dir):
    recipe = load_recipe("s8_bn", TINY)
    from cifarctl.training.builders import build_model

    torch.manual_seed(0)
    model = build_model(recipe)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    seen = []
    r = run_lr_find(recipe, data_source="synthetic", device="cpu", num_iter=20, model=model,
                    progress=lambda i, n, lr, loss: seen.append((i, n, lr, loss)))
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # weights and BatchNorm statistics
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    assert [s[0] for s in seen] == list(range(1, 21)) and all(s[1] == 20 for s in seen)
    assert len(r.lr) == 20 and r.lr[0] == pytest.approx(1e-7) and r.lr[-1] == pytest.approx(10)
    assert [s[2] for s in seen] == pytest.approx(r.lr)
    assert r.suggestions["steepest"] is not None and r.recommended is not None
    _within(r)

    json_path, png_path = write_lr_find(r, tmp_path)
    data = json.loads(json_path.read_text())
    for key in ("lr", "loss", "smoothed_loss", "suggestions", "recommended", "reason", "diverged",
                "num_iter"):
        assert key in data
    assert set(data["suggestions"]) == {"steepest", "valley", "min_div_10"}
    with Image.open(png_path) as im:
        im.load()
        assert im.format == "PNG" and im.size[0] > 300


def test_sweep_shorter_than_torch_lr_finders_minimum(data_cache_dir):
    r = run_lr_find(load_recipe("s8_bn", TINY), data_source="synthetic", device="cpu", num_iter=8)
    assert len(r.lr) == 8
    assert r.suggestions["steepest"] is None
    assert "steepest gradient unavailable" in r.message
    assert r.recommended is not None
    _within(r)


def test_diverged_sweep_is_a_message_not_a_crash(data_cache_dir):
    recipe = load_recipe("s8_bn", TINY)
    r = run_lr_find(recipe, data_source="synthetic", device="cpu", start_lr=1.0, end_lr=1e8, num_iter=25)
    assert r.diverged and len(r.lr) < 25
    assert "diverged" in r.message
    _within(r)


def test_resolve_max_lr(data_cache_dir):
    numeric = load_recipe("s8_bn", TINY)
    assert choose_max_lr(numeric) == (0.1, None)
    auto = load_recipe("s8_bn", TINY + ["scheduler.max_lr=auto", "scheduler.lr_find.num_iter=20",
                                        "scheduler.lr_find.start_lr=1e-5"])
    lr, result = choose_max_lr(auto, data_source="synthetic", device="cpu")
    assert lr == result.recommended and 1e-5 <= lr <= 10
    assert result.num_iter == 20 and result.start_lr == 1e-5
    with pytest.raises(CifarctlError):
        choose_max_lr(load_recipe("s8_bn", TINY + ["scheduler={name: none}"]))


def test_out_dir_never_overwrites(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5)
    a = make_out_dir(tmp_path, "s8_bn", now)
    b = make_out_dir(tmp_path, "s8_bn", now)
    assert a.name == "s8_bn-20260102-030405" and b.name == "s8_bn-20260102-030405-2"


# ------------------------------------------------------------------------- command
def _invoke(*args: str):
    from cifarctl.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_cli_lr_find(tmp_path, data_cache_dir):
    common = ["--num-iter", "20", "--data", "synthetic", "--device", "cpu", "--runs-dir", str(tmp_path),
              "--set", "data.train_subset=128", "--batch-size", "32"]
    res = _invoke("lr-find", "s8_bn", *common)
    assert res.exit_code == 0, res.output
    assert "recommended lr" in res.output and "valley" in res.output
    assert "learning rate" in res.output  # the chart
    assert "See the graph" not in res.output and "it/s" not in res.output  # torch-lr-finder silenced
    folders = list((tmp_path / "lr-find").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("s8_bn-")
    assert {p.name for p in folders[0].iterdir()} == {"lr_find.json", "lr_find.png"}

    res = _invoke("lr-find", "s8_bn", *common, "--json", "--optimizer", "adam", "--weight-decay", "0.01")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["num_iter"] == 20 and data["settings"]["optimizer"] == "adam"
    assert data["settings"]["weight_decay"] == 0.01 and data["settings"]["batch_size"] == 32
    assert data["recommended"] is not None
    assert len(list((tmp_path / "lr-find").iterdir())) == 2


def test_cli_lr_find_bad_target(tmp_path):
    res = _invoke("lr-find", "s8_bm", "--runs-dir", str(tmp_path))
    assert res.exit_code == 2
    assert "s8_bn" in res.output
