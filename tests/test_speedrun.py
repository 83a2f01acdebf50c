"""The speedrun recipe (airbench94 style): whitening init, schedule, lookahead, TTA, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY, only_run, train_tiny
from torch import nn

# the speedrun runs (module fixtures) serve several tests: one worker runs them
pytestmark = pytest.mark.xdist_group("test_speedrun")

STOP = "CIFARCTL_TEST_STOP_AT_STEP"
# TINY (256 synthetic images, 4 steps per epoch, 2 epochs) on a narrow speedrun net; the
# whitening bias freezes after epoch 1 and the lookahead syncs at step 5 and after step 8.
SMALL = [*TINY, "--set", "model_args.widths=[16, 32, 32]", "--set", "model_args.whiten_bias_epochs=1"]


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Normalized-looking images with correlated neighbouring pixels (like photos)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 34, 34, generator=g)
    return nn.functional.avg_pool2d(x, 3, stride=1) * 2  # (n, 3, 32, 32)


# ------------------------------------------------------------------------ whitening
def test_data_init_sets_the_whitening_conv_deterministically():
    from cifarctl.registry import create_model

    torch.manual_seed(0)
    a = create_model("speedrun_net")
    torch.manual_seed(1)
    b = create_model("speedrun_net")
    before = a.whiten.weight.clone()
    x = _images()
    a.data_init(x)
    b.data_init(x)
    w = a.whiten.weight
    assert not torch.equal(w, before)
    assert torch.equal(w, b.whiten.weight)  # from the data alone, not the random init
    assert torch.equal(a.whiten.bias, torch.zeros(24))
    assert torch.equal(w[12:], -w[:12])  # the filters and their negatives
    # The first 12 filters whiten 2x2 patches: their outputs have ~identity covariance.
    out = nn.functional.conv2d(x, w[:12]).permute(0, 2, 3, 1).reshape(-1, 12)
    cov = out.T @ out / len(out)
    assert torch.allclose(cov, torch.eye(12), atol=0.02)
    assert not w.requires_grad
    assert a.whiten.bias.requires_grad


def test_the_whitening_bias_is_frozen_after_its_epochs_and_bn_scales_are_frozen():
    from cifarctl.registry import create_model
    from cifarctl.training.model_hooks import Freezer

    m = create_model("speedrun_net", whiten_bias_epochs=3)
    for epoch, trains in [(0, True), (2, True), (3, False), (9, False)]:
        frozen = m.frozen_parameters(epoch)
        assert (m.whiten.bias not in frozen) is trains
        assert m.whiten.bias.requires_grad  # never flipped: no recompile, no unused DDP parameter
    # the engine's Freezer puts a frozen parameter back after a step that moved it
    freezer = Freezer(m, 3)
    before = m.whiten.bias.detach().clone()
    other = m.block1.conv1.weight.detach().clone()
    with torch.no_grad():
        m.whiten.bias.add_(1.0)
        m.block1.conv1.weight.add_(1.0)
    freezer.after_step()
    assert torch.equal(m.whiten.bias, before)
    assert torch.equal(m.block1.conv1.weight, other + 1.0)
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
    assert len(bns) == 6
    assert all(not bn.weight.requires_grad and bn.bias.requires_grad for bn in bns)
    assert all(bn.momentum == pytest.approx(0.4) and bn.eps == 1e-12 for bn in bns)
    free = create_model("speedrun_net", freeze_bn_scale=False, bn_momentum=0.9)
    assert all(b.weight.requires_grad and b.momentum == pytest.approx(0.1)
               for b in free.modules() if isinstance(b, nn.BatchNorm2d))


def test_prepare_calls_data_init_on_strided_normalized_train_images():
    from cifarctl.training.prepare import prepare
    from cifarctl.training.builders import build_model, seed_everything
    from cifarctl.recipe.load import load_recipe

    recipe = load_recipe("speedrun", ["data.source=synthetic:256:64", "data.batch_size=64",
                                      "model_args.widths=[16, 32, 32]"])
    t = prepare(recipe, device="cpu")
    seed_everything(recipe.seed)
    fresh = build_model(recipe)
    assert not torch.equal(fresh.whiten.weight, t.raw_model.whiten.weight)
    fresh.data_init(t.batches.normalize.normalize_only(t.batches.x))  # 256 < 5,000: every image
    assert torch.equal(fresh.whiten.weight, t.raw_model.whiten.weight)


def test_models_without_data_init_are_left_alone():
    from cifarctl.training.model_hooks import Freezer, init_from_data

    m = nn.Linear(3, 2)
    before = m.weight.clone()
    assert init_from_data(m, torch.zeros(4, 3, 8, 8, dtype=torch.uint8), lambda x: x.float(), "cpu") is False
    Freezer(m, 0).after_step()
    assert torch.equal(m.weight, before)


def test_init_from_data_takes_an_even_stride_of_at_most_max_images():
    import numpy as np

    from cifarctl.training.model_hooks import init_from_data

    seen = []

    class M(nn.Module):
        def data_init(self, x):
            seen.append(x)

    nhwc = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, 3)  # image i is all i
    assert init_from_data(M(), nhwc, lambda x: x.float(), torch.device("cpu"), max_images=4)
    assert seen[0].shape == (4, 3, 1, 1)
    assert seen[0][:, 0, 0, 0].tolist() == [0, 2, 4, 6]


# ------------------------------------------------------------------------ recipe, optimizer, schedule
def test_speedrun_recipe_follows_airbench94():
    from cifarctl.recipe.load import load_recipe

    r = load_recipe("speedrun")
    o = r.optimizer
    assert r.model == "speedrun_net"
    assert r.data.batch_size == 1024
    assert r.epochs == 10
    assert o.name == "sgd"
    assert o.nesterov
    assert o.momentum == 0.85
    # airbench: lr 11.5 and weight decay 0.0153 per 1024 examples, decoupled from momentum
    assert o.lr * (1 + 1 / (1 - o.momentum)) * 1024 / r.data.batch_size == pytest.approx(11.5)
    assert o.weight_decay * 11.5 == pytest.approx(0.0153, rel=1e-4)
    assert o.norm_lr_scale == 64
    assert r.loss.label_smoothing == 0.2
    assert r.scheduler.name == "linear_warmup_decay"
    assert r.lookahead.every_steps == 5
    assert r.eval_tta == "flip_translate"
    assert r.precision == "bf16"
    assert r.channels_last
    assert r.model_args["bn_momentum"] == 0.6
    assert r.model_args["whiten_bias_epochs"] == 3
    assert r.target.min_test_acc == 94.0
    assert r.target.max_epochs == 10


def test_norm_lr_scale_puts_norm_parameters_in_a_second_group():
    from cifarctl.training.builders import build_optimizer
    from cifarctl.training.schedules import build_scheduler
    from cifarctl.recipe.load import load_recipe
    from cifarctl.registry import create_model

    r = load_recipe("speedrun")
    model = create_model("speedrun_net")
    opt = build_optimizer(model, r)
    main, norm = opt.param_groups
    bn_params = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in norm["params"]} == bn_params
    assert not bn_params & {id(p) for p in main["params"]}
    assert len(main["params"]) + len(norm["params"]) == len(list(model.parameters()))
    assert norm["lr"] == pytest.approx(1.5 * 64)
    assert main["lr"] == 1.5
    assert norm["weight_decay"] * norm["lr"] == pytest.approx(main["weight_decay"] * main["lr"])
    build_scheduler(r, opt, 49, None)  # linear_warmup_decay starts at 0.2 x each group's lr
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.3, 0.3 * 64])
    # OneCycle scales its peak per group; one group stays a plain SGD (as every other recipe)
    oc = load_recipe("speedrun", ["scheduler={name: onecycle, max_lr: 0.4}"])
    opt = build_optimizer(model, oc)
    build_scheduler(oc, opt, 10, 0.4)
    assert [g["max_lr"] for g in opt.param_groups] == pytest.approx([0.4, 0.4 * 64])
    plain = load_recipe("s8_bn")
    assert len(build_optimizer(create_model("s8_bn"), plain).param_groups) == 1


def test_linear_warmup_decay_equals_airbench94s_lambda():
    from cifarctl.training.schedules import LinearWarmupDecay

    total = 476  # airbench94: ceil(48 steps x 9.9 epochs)

    def airbench(step):
        warmup_steps = int(total * 0.23)
        warmdown_steps = total - warmup_steps
        if step < warmup_steps:
            frac = step / warmup_steps
            return 0.2 * (1 - frac) + 1.0 * frac
        frac = (step - warmup_steps) / warmdown_steps
        return 1.0 * (1 - frac) + 0.07 * frac

    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p]}, {"params": [nn.Parameter(torch.zeros(1))], "lr": 64.0}], lr=2.0)
    sched = LinearWarmupDecay(opt, total)
    for step in range(total):
        assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * airbench(step), rel=1e-12)
        assert opt.param_groups[1]["lr"] == pytest.approx(64.0 * airbench(step), rel=1e-12)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * 0.07)  # and it stays there
    tiny = LinearWarmupDecay(torch.optim.SGD([p], lr=1.0), 1)  # no warm-up step at all
    assert tiny.get_last_lr() == [1.0]


# ------------------------------------------------------------------------ lookahead
def test_lookahead_equals_airbench94s():
    from cifarctl.training.lookahead import Lookahead

    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ref = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ref.load_state_dict(ours.state_dict())
    total = 23
    la = Lookahead(ours, total, every_steps=5, decay=0.95, ramp_power=3)
    ref_ema = {k: v.clone() for k, v in ref.state_dict().items()}  # airbench's LookaheadState
    alpha = 0.95**5 * (torch.arange(total + 1) / total) ** 3

    def ref_update(decay):
        for e, p in zip(ref_ema.values(), ref.state_dict().values()):
            if p.dtype in (torch.half, torch.float):
                e.lerp_(p, 1 - decay)
                p.copy_(e)

    with torch.no_grad():
        for step in range(1, total + 1):
            for m in (ours, ref):
                g = torch.Generator().manual_seed(step)  # the same "training step" for both
                for v in m.state_dict().values():
                    if v.is_floating_point():
                        v.add_(torch.randn(v.shape, generator=g))
            la.after_step(step)
            if step % 5 == 0:
                ref_update(alpha[step].item())
            if step >= total:
                ref_update(1.0)
            for k, v in ref.state_dict().items():
                assert torch.allclose(ours.state_dict()[k], v, rtol=1e-5, atol=1e-6), (step, k)  # float32 alpha there
    assert all(torch.equal(la.slow[k], ours.state_dict()[k]) for k in la.slow)  # weights = average


# ------------------------------------------------------------------------ training through the CLI
@pytest.fixture(scope="module")
def speedrun_run(tmp_path_factory) -> Path:
    """`cifarctl train speedrun` for 1 epoch on a tiny synthetic set, on the CPU, with the
    narrow widths the other tests use (the full width is checked without training)."""
    runs = tmp_path_factory.mktemp("speedrun")
    return train_tiny(runs, "sr", "--set", "epochs=1", "--set", "model_args.widths=[16, 32, 32]",
                      "--device", "cpu", recipe="speedrun")


def test_speedrun_trains_one_epoch_via_the_cli(speedrun_run):
    summary = json.loads((speedrun_run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_done"] == 1
    assert summary["steps"] == 4
    assert summary["model"] == "speedrun_net"
    from cifarctl.registry import create_model

    narrow = create_model("speedrun_net", widths=(16, 32, 32))
    assert summary["params"] == sum(p.numel() for p in narrow.parameters())
    assert sum(p.numel() for p in create_model("speedrun_net").parameters()) == 1_972_792  # the recipe's width
    ckpt = torch.load(speedrun_run / "checkpoints" / "last.pt", weights_only=True)
    slow = ckpt["lookahead"]["slow"]
    assert "whiten.weight" in slow
    assert "block1.norm1.running_var" in slow
    for k, v in slow.items():  # after the last step the weights ARE the average
        assert torch.equal(ckpt["model"][k], v), k
    assert len(ckpt["optimizer"]["param_groups"]) == 2


def test_eval_uses_the_recipes_tta_and_reproduces_the_last_epoch(cli, speedrun_run):
    last = json.loads((speedrun_run / "metrics.jsonl").read_text().splitlines()[-1])
    res = cli("eval", speedrun_run, "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["tta"] == "flip_translate"
    assert result["accuracy"] == last["test_acc"]
    assert result["loss"] == pytest.approx(last["test_loss"], rel=1e-6)
    plain = json.loads(cli("eval", speedrun_run, "--tta", "none", "--json").stdout)
    assert plain["tta"] == "none"
    assert plain["images"] == 64


# ------------------------------------------------------------------------ resume
@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from cifarctl.cli import app

    runs = tmp_path_factory.mktemp("speedrun-ref")
    res = CliRunner().invoke(app, ["train", "speedrun", *SMALL, "--runs-dir", str(runs), "--name", "ref",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return runs / "ref"


def _ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds", "images_per_s")} for r in rows]


@pytest.mark.parametrize("stop_at", [4, 6], ids=["between-epochs", "mid-epoch-2-after-a-sync"])
def test_lookahead_state_round_trips_and_resume_is_exact(cli, runs_dir, monkeypatch, reference, stop_at):
    monkeypatch.setenv(STOP, str(stop_at))
    res = cli("train", "speedrun", *SMALL, "--runs-dir", runs_dir, "--device", "cpu")
    assert res.exit_code == 130, res.output
    run = only_run(runs_dir)
    stopped = _ckpt(run)
    assert stopped["step"] == stop_at
    assert stopped["lookahead"] is not None
    if stop_at == 6:  # synced at step 5, trained one more step: the slow copy is its own state
        assert not torch.equal(stopped["lookahead"]["slow"]["head.weight"], stopped["model"]["head.weight"])
    monkeypatch.delenv(STOP)
    res = cli("train", "--resume", run, "--device", "cpu")
    assert res.exit_code == 0, res.output
    ref, got = _ckpt(reference), _ckpt(run)
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], got["model"][k]), k
    for k in ref["lookahead"]["slow"]:
        assert torch.equal(ref["lookahead"]["slow"][k], got["lookahead"]["slow"][k]), k
    assert _metrics(run) == _metrics(reference)


def test_the_engine_freezes_the_whitening_bias_after_whiten_bias_epochs():
    from cifarctl.training import engine
    from cifarctl.training.prepare import prepare
    from cifarctl.recipe.load import load_recipe

    sets = [s for s in SMALL if s != "--set"] + ["lookahead=null", "data.test_batch_size=64"]
    t = prepare(load_recipe("speedrun", sets), device="cpu")
    bias = {0: t.raw_model.whiten.bias.detach().clone()}
    for ev in engine.train_epochs(t):
        if ev["type"] == "step" and ev["epoch"] == 2:
            assert t.raw_model.whiten.bias.requires_grad  # kept in place by the engine, never flipped
        if ev["type"] == "epoch":
            bias[ev["epoch"]] = t.raw_model.whiten.bias.detach().clone()
    assert not torch.equal(bias[0], bias[1])  # trained in epoch 1
    assert torch.equal(bias[1], bias[2])      # frozen in epoch 2


# ------------------------------------------------------------------------ test-time augmentation
class _Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.views: list[torch.Tensor] = []
        self.head = nn.Linear(3, 10)

    def forward(self, x):
        self.views.append(x.clone())
        return self.head(x.mean((2, 3)))


def test_flip_translate_sees_six_views_with_the_right_shapes():
    from cifarctl.training.evaluation import tta_forward

    x = torch.randn(5, 3, 32, 32)
    m = _Recorder()
    out = tta_forward(m, x, "flip_translate")
    assert out.shape == (5, 10)
    assert len(m.views) == 1  # one forward pass of all six views
    views = m.views[0].chunk(6)
    assert all(v.shape == x.shape for v in views)
    plain, flipped, down_right, down_right_flipped, up_left, up_left_flipped = views
    assert torch.equal(plain, x)
    assert torch.equal(flipped, x.flip(3))
    assert torch.equal(down_right[..., 1:, 1:], x[..., :-1, :-1])  # shifted one pixel, reflect border
    assert torch.equal(down_right[..., 0, 1:], x[..., 1, :-1])
    assert torch.equal(up_left[..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(down_right_flipped, down_right.flip(3))
    assert torch.equal(up_left_flipped, up_left.flip(3))
    with pytest.raises(ValueError, match="flip_translate"):
        tta_forward(m, x, "five_crop")


def test_tta_equals_plain_eval_for_an_invariant_model_on_flat_images():
    from cifarctl.training.evaluation import evaluate

    torch.manual_seed(0)
    colors = torch.randint(0, 256, (40, 3, 1, 1), dtype=torch.uint8)
    x = colors.expand(40, 3, 32, 32).contiguous()  # each image one colour: flips and shifts change nothing
    y = torch.randint(0, 10, (40,))
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    norm = lambda u8: u8.float() / 255  # noqa: E731
    results = {tta: evaluate(model, x, y, normalize=norm, batch_size=16, tta=tta)
               for tta in ("none", "flip", "flip_translate")}
    for tta in ("flip", "flip_translate"):
        assert results[tta]["acc"] == results["none"]["acc"]
        assert results[tta]["loss"] == pytest.approx(results["none"]["loss"], rel=1e-6)
        assert torch.equal(results[tta]["preds"], results["none"]["preds"])
        assert results[tta]["preds"].shape == (40,)
        assert results[tta]["n"] == 40
    # ... and a model that sees position does differ under flip_translate
    edge = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    rnd = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a = evaluate(edge, rnd, y[:8], normalize=norm, batch_size=8, tta="none")
    b = evaluate(edge, rnd, y[:8], normalize=norm, batch_size=8, tta="flip_translate")
    assert a["loss"] != b["loss"]


@pytest.mark.parametrize("mode", ["flip", "flip_translate"])
def test_batched_tta_equals_the_per_view_average_and_keeps_channels_last(mode):
    import torch.nn.functional as F

    from cifarctl.training.evaluation import tta_forward

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(7, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    seen = []
    model[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    out = tta_forward(model, x, mode)
    assert len(seen) == 1
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # today's formula, one view at a time
        mirror = lambda v: 0.5 * model(v) + 0.5 * model(v.flip(3))  # noqa: E731
        if mode == "flip":
            want = mirror(x)
        else:
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            want = 0.5 * mirror(x) + 0.5 * (mirror(padded[:, :, :32, :32]) + mirror(padded[:, :, 2:, 2:])) / 2
    assert torch.allclose(out, want, atol=1e-5, rtol=1e-5)
