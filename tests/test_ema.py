"""Recipe keys ``ema`` (averaged weights) and ``early_stop`` (patience on the chosen figure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY, only_run

from cifarctl.training.ema import EMA, EarlyStop

STOP = "CIFARCTL_TEST_STOP_AT_STEP"
EMA_SET = ["--set", "ema.decay=0.9", "--set", "ema.warmup_steps=2"]


def ckpt(run: Path, which: str = "last") -> dict:
    return torch.load(run / "checkpoints" / f"{which}.pt", weights_only=True)


def rows(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------ EMA, unit
def test_ema_follows_torch_averaged_model_and_warms_up():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.5, warmup_steps=1)
    ref = [p.detach().clone() for p in model.state_dict().values() if p.is_floating_point()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.after_step(1)  # warm-up: a copy
    got = [v for k, v in ema.module.state_dict().items() if v.is_floating_point()]
    live = [v for v in model.state_dict().values() if v.is_floating_point()]
    for a, b in zip(got, live):
        assert torch.equal(a, b)
    before = [v.clone() for v in live]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(2.0)
    ema.after_step(2)  # ema <- 0.5 * ema + 0.5 * weights
    for a, b, w in zip([v for v in ema.module.state_dict().values() if v.is_floating_point()], before,
                       [v for v in model.state_dict().values() if v.is_floating_point()]):
        assert torch.allclose(a, 0.5 * b + 0.5 * w)
    assert int(ema.averaged.n_averaged) == 2
    assert len(ref) == len(got)


def test_ema_step_reads_nothing_back(monkeypatch):
    """The update never asks the device for a number (AveragedModel.update_parameters does)."""
    model = torch.nn.Linear(4, 4)
    ema = EMA(model, decay=0.99)
    calls = []
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append("item"))
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: calls.append("bool") or True)
    for step in range(1, 4):
        ema.after_step(step)
    assert calls == []


# ------------------------------------------------------------------------ early stop, unit
@pytest.mark.parametrize("monitor,mode,values,stop_at", [
    ("acc", "max", [10, 20, 25, 24, 25.05, 25.0, 30], 6),  # min_delta 0.1: 25.05 is no gain
    ("loss", "min", [2.0, 1.5, 1.6, 1.3, 1.45, 1.41, 1.5], 7),
    ("acc", "max", [50, float("nan"), 49, 48], 4),  # NaN never counts as better
])
def test_early_stop_on_a_scripted_metric(monitor, mode, values, stop_at):
    es = EarlyStop(monitor, mode, patience=3, min_delta=0.1, split="test")
    stopped = None
    for epoch, v in enumerate(values, start=1):
        if es.update(epoch, v):
            stopped = epoch
            break
    assert stopped == stop_at
    assert "did not improve by more than 0.1 for 3 epochs" in es.reason
    assert f"after epoch {stop_at}" in es.reason


# ------------------------------------------------------------------------ through train
def test_ema_run_evaluates_and_saves_both(cli, runs_dir):
    res = cli("train", "s8_bn", *TINY, *EMA_SET, "--runs-dir", runs_dir)
    assert res.exit_code == 0, res.output
    run = only_run(runs_dir)
    c = ckpt(run)
    assert c["ema"] is not None
    assert int(c["ema"]["n_averaged"]) == c["step"] == 8
    # the averaged weights are not the trained ones
    assert any(not torch.equal(c["ema"]["module." + k], v) for k, v in c["model"].items() if v.is_floating_point())
    r = rows(run)
    assert all("ema_test_acc" in x and "test_acc" in x for x in r)
    s = json.loads((run / "summary.json").read_text())
    assert s["weights"] == "ema"
    assert s["final_test_acc"] == r[-1]["ema_test_acc"]
    assert s["ema"]["trained_final_test_acc"] == r[-1]["test_acc"]
    assert "weights: EMA (decay 0.9)" in res.output
    shown = cli("compare", str(run))
    assert shown.exit_code == 0, shown.output
    assert "EMA weights (decay 0.9)" in shown.output
    # eval uses the averaged weights: its accuracy is the EMA figure of that epoch
    out = cli("eval", str(run), "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["accuracy"] == pytest.approx(r[-1]["ema_test_acc"], abs=1e-6)


@pytest.mark.parametrize("stop_at", [3, 4], ids=["mid-epoch", "between-epochs"])
def test_ema_resume_is_bitwise(cli, runs_dir, tmp_path, monkeypatch, stop_at):
    ref_dir = tmp_path / "ref"
    assert cli("train", "s8_bn", *TINY, *EMA_SET, "--runs-dir", ref_dir).exit_code == 0
    monkeypatch.setenv(STOP, str(stop_at))
    assert cli("train", "s8_bn", *TINY, *EMA_SET, "--runs-dir", runs_dir).exit_code == 130
    monkeypatch.delenv(STOP)
    run = only_run(runs_dir)
    res = cli("train", "--resume", run)
    assert res.exit_code == 0, res.output
    a, b = ckpt(only_run(ref_dir))["ema"], ckpt(run)["ema"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = lambda rs: [{k: v for k, v in x.items() if "seconds" not in k and k != "images_per_s"} for x in rs]  # noqa: E731
    assert strip(rows(run)) == strip(rows(only_run(ref_dir)))


def test_early_stop_ends_the_run_and_says_why(cli, runs_dir, monkeypatch):
    """A scripted test accuracy (the engine's one evaluation seam): 50, 40, 40, 60 with
    patience 2 stops after epoch 3, and the run folder says so."""
    from cifarctl.training import engine

    script = iter([50.0, 40.0, 40.0, 60.0])
    monkeypatch.setattr(engine, "_test_metrics", lambda t, x, y, model=None: {"loss": 1.0, "acc": next(script)})
    res = cli("train", "s8_bn", *TINY, "--set", "epochs=4", "--set", "early_stop.patience=2",
              "--runs-dir", runs_dir)
    assert res.exit_code == 0, res.output
    run = only_run(runs_dir)
    s = json.loads((run / "summary.json").read_text())
    assert s["epochs_done"] == 3
    assert s["epochs_planned"] == 4
    assert s["status"] == "completed"
    assert s["stopped_early"].startswith("early stop after epoch 3: test acc did not improve")
    assert s["best_epoch"] == 1
    assert "early stop after epoch 3" in (run / "log.txt").read_text()
    assert len(rows(run)) == 3
    again = cli("train", "--resume", run)
    assert again.exit_code == 2
    assert "stopped early" in again.output
