"""Every registered model, the assignment constraints, the registry, and the summary
(receptive fields checked by hand on small nets)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifarctl.errors import UsageError
from cifarctl.registry import create_model, list_models, register_model, resolve_name
from cifarctl.analysis.layers import summarize


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ every model
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_gives_finite_logits_and_grads(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    # plain logits, not log-probabilities (log_softmax rows would logsumexp to 0)
    assert not torch.allclose(out.logsumexp(1), torch.zeros(2), atol=1e-4)
    F.cross_entropy(out, torch.tensor([3, 7])).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{pname} gets no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", list_models())
def test_summary_matches_the_model(name):
    model = create_model(name)
    s = summarize(model)
    assert s.total_params == n_params(model)
    assert s.receptive_field is not None
    assert s.receptive_field > 1
    assert s.layers
    assert all({"name", "type", "output_shape", "params", "rf", "jump"} <= set(r) for r in s.layers)
    json.dumps(s.to_dict())


# ------------------------------------------------------------------ assignments
def test_resnet_custom_matches_the_seed_exactly():
    model = create_model("resnet_custom")
    assert n_params(model) == 6_573_130
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert resolve_name("custom_resnet") == "resnet_custom"
    assert n_params(create_model("custom_resnet", dropout=0.1)) == 6_573_130
    s = summarize(model)
    # torchsummary in the seed: forward/backward 8.00 MB, params 25.07 MB
    assert round(s.forward_backward_bytes / 2**20, 2) == 8.00
    assert round(s.param_bytes / 2**20, 2) == 25.07


def test_resnets():
    assert n_params(create_model("resnet18")) == 11_173_962
    assert n_params(create_model("resnet34")) == 21_282_122


@pytest.mark.parametrize("name", ["s8_bn", "s8_gn", "s8_ln"])
def test_s8_under_50k_with_its_norm(name):
    model = create_model(name, dropout=0.1)
    assert n_params(model) < 50_000
    kinds = {type(m).__name__ for m in model.modules()}
    assert ("BatchNorm2d" in kinds) == (name == "s8_bn")
    groups = {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {"s8_bn": set(), "s8_gn": {4}, "s8_ln": {1}}[name]


def test_s8_gn_groups_argument():
    model = create_model("s8_gn", groups=8)
    assert {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)} == {8}
    with pytest.raises(UsageError, match="groups"):
        create_model("s8_gn", groups=5)


def test_s9_constraints():
    model = create_model("s9_dilated")
    assert n_params(model) == 138_608  # the default layout (runs trained before widths load)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert any(c.groups == c.in_channels > 1 for c in convs), "no depthwise conv"
    assert any(c.dilation[0] > 1 for c in convs), "no dilated conv"
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) for m in model.modules())
    assert summarize(model).receptive_field > 44


def test_s9_widths_set_each_conv_block():
    wide = [32, 32, 32, 64, 64, 64, 128, 128, 128, 160, 160, 160]
    model = create_model("s9_dilated", widths=wide)
    assert n_params(model) == 185_184
    outs = [m.conv.out_channels if isinstance(m.conv, nn.Conv2d) else m.conv.pointwise.out_channels
            for m in model.modules() if hasattr(m, "conv") and hasattr(m, "norm")]
    assert outs == wide
    with pytest.raises(UsageError, match="model_args.widths"):
        create_model("s9_dilated", widths=wide[:11])


def test_s6_exact_counts():
    assert n_params(create_model("s6_dilated")) == 185_936
    assert n_params(create_model("s6_dilated_lite")) == 151_504
    convs = [m for m in create_model("s6_dilated").modules() if isinstance(m, nn.Conv2d)]
    assert any(c.dilation[0] > 1 for c in convs)
    assert any(c.groups > 1 for c in convs)


# ------------------------------------------------------------------ registry
def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="twice"):
        register_model(name="resnet18")(lambda: None)
    with pytest.raises(ValueError, match="twice"):
        register_model(name="a_new_name_for_test", aliases=("custom_resnet",))(lambda: None)
    assert "a_new_name_for_test" not in list_models()


def test_unknown_model_names_the_closest():
    with pytest.raises(UsageError, match="resnet_custom"):
        create_model("resnet_custon")


def test_bad_model_args_are_usage_errors():
    with pytest.raises(UsageError, match="model_args"):
        create_model("resnet18", widht=3)


# ------------------------------------------------------------------ receptive field by hand
def rows(s):
    return {r["name"]: r for r in s.layers}


def test_rf_conv_conv_pool_conv():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
    )
    s = summarize(net, input_size=(3, 8, 8))
    r = rows(s)
    assert [(r[k]["rf"], r[k]["jump"]) for k in "0123"] == [(3, 1), (5, 1), (6, 2), (10, 2)]
    assert (s.receptive_field, s.jump) == (10, 2)
    assert r["2"]["kernel"] == [2, 2]
    assert r["2"]["stride"] == [2, 2]
    # conv MACs: out numel x in channels x k x k
    assert r["0"]["mult_adds"] == 4 * 8 * 8 * 3 * 9
    # a global average pool covers its whole input (4x4 at jump 2)
    gap = nn.Sequential(net, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    assert summarize(gap, input_size=(3, 8, 8)).receptive_field == 10 + 3 * 2


def test_rf_dilation_and_stride():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=2, dilation=2),  # 1 + 2*2*1 = 5
        nn.Conv2d(4, 4, 3, stride=2, padding=1),  # 5 + 2*1 = 7, jump 2
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),  # 7 + 2*2*2 = 15
        nn.Conv2d(4, 4, 5, padding=2),  # 15 + 4*2 = 23
    )
    s = summarize(net, input_size=(3, 16, 16))
    r = rows(s)
    assert [(r[k]["rf"], r[k]["jump"]) for k in "0123"] == [(5, 1), (7, 2), (15, 2), (23, 2)]
    assert r["0"]["dilation"] == [2, 2]
    assert r["0"]["padding"] == [2, 2]
    assert r["1"]["stride"] == [2, 2]


class _Residual(nn.Module):
    """x -> a: two 3x3 convs (RF +4), b: a 1x1 conv (RF +0); a + b."""

    def __init__(self, cat: bool = False):
        super().__init__()
        self.cat = cat
        self.a = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
        self.b = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        return torch.cat([b, a], 1) if self.cat else b + a


@pytest.mark.parametrize("cat", [False, True])
def test_rf_residual_takes_the_longest_path(cat):
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), _Residual(cat), nn.Conv2d(8 if cat else 4, 4, 3, padding=1)
    )
    s = summarize(net, input_size=(3, 16, 16))
    r = rows(s)
    assert r["1.b"]["rf"] == 3
    assert r["1.a"]["rf"] == 7
    assert r["1"]["rf"] == 7
    assert "residual" in r["1"]["note"]
    assert r["2"]["rf"] == 9
    assert s.receptive_field == 9


def test_rf_residual_in_the_top_level_forward():
    class Top(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 3, padding=1)
            self.c2 = nn.Conv2d(4, 4, 5, padding=2)
            self.c3 = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            x = self.c1(x)
            return self.c3(F.relu(x + self.c2(x)))

    s = summarize(Top(), input_size=(3, 8, 8))
    r = rows(s)
    assert (r["c1"]["rf"], r["c2"]["rf"], r["c3"]["rf"]) == (3, 7, 7)
    assert "residual" in r["c3"]["note"]
    assert not r["c2"]["note"]


def test_summary_depth_limits_rows_not_totals():
    model = create_model("resnet18")
    full, top = summarize(model), summarize(model, depth=1)
    assert top.total_params == full.total_params == 11_173_962
    assert {r["depth"] for r in top.layers} == {1}
    assert len(top.layers) < len(full.layers)
    assert top.receptive_field == full.receptive_field


def test_summary_leaves_train_mode_alone():
    model = create_model("s8_bn").train()
    summarize(model)
    assert model.training


# ------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    from cifarctl.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_cli_models_table(cli):
    res = cli("models")
    assert res.exit_code == 0, res.output
    assert "resnet_custom" in res.output
    assert "6,573,130" in res.output
    res = cli("models", "s8*", "--json")
    assert [r["name"] for r in json.loads(res.output)] == ["s8_bn", "s8_gn", "s8_ln"]
    res = cli("models", "speedrun", "--json")  # a plain word matches inside a name
    assert [r["name"] for r in json.loads(res.output)] == ["speedrun_net"]
    res = cli("models", "s8", "--json")  # a glob is anchored, a word is not
    assert [r["name"] for r in json.loads(res.output)] == ["s8_bn", "s8_gn", "s8_ln"]
    res = cli("models", "nothing_like_it")
    assert res.exit_code == 2
    assert "no model matches 'nothing_like_it'" in res.output


def test_cli_summary_json(cli):
    res = cli("summary", "resnet_custom", "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["total_params"] == 6_573_130
    assert d["receptive_field"] == 88
    assert all("rf" in r and "jump" in r for r in d["layers"])
    res = cli("summary", "custom_resnet", "--depth", "1")
    assert res.exit_code == 0
    assert "6,573,130" in res.output


def test_cli_summary_of_a_recipe(cli):
    from cifarctl.bundled import bundled_recipes

    if "s8_gn" not in bundled_recipes():
        pytest.skip("no bundled s8_gn recipe")
    res = cli("summary", "recipes/s8_gn.yaml", "--json")
    assert res.exit_code == 0, _all_output(res)
    d = json.loads(res.output)
    assert d["recipe"] == "recipes/s8_gn.yaml"
    assert d["total_params"] < 50_000


def _all_output(res) -> str:
    try:
        return res.output + res.stderr
    except ValueError:  # older click without separate stderr
        return res.output


def test_cli_summary_errors(cli):
    res = cli("summary", "resnet_custon")
    assert res.exit_code == 2
    assert "resnet_custom" in _all_output(res)
    res = cli("summary", "s8_bn", "--input-size", "3,32")
    assert res.exit_code == 2
    assert "--input-size" in _all_output(res)
