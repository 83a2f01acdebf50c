"""The assignments' rules: one recipe or model built to break each kind of rule fails with
that rule named; every bundled recipe passes its own rules; train refuses a break before
any step (unless --break-rules, which the run records)."""

from __future__ import annotations

import json

import pytest
from helpers import TINY

from cifarctl.analysis.rules import broken, check_rules
from cifarctl.bundled import bundled_recipes
from cifarctl.recipe.load import load_recipe


@pytest.mark.parametrize("name", sorted(n for n in bundled_recipes() if n != "speedrun"))
def test_every_bundled_recipe_passes_its_own_rules(name):
    rows = check_rules(load_recipe(name))
    assert rows, [r for r in rows if r["ok"] is False]
    assert not broken(rows), [r for r in rows if r["ok"] is False]


BREAKS = {  # rule kind -> (recipe, --set overrides that break it, the rule named)
    "forbid": ("s9_dilated", ["rules.forbid=[MaxPool2d, Conv2d]"], "no Conv2d"),
    "require-depthwise": ("s8_bn", ["rules.require=[depthwise_separable]"], "depthwise separable"),
    "require-dilated": ("s8_bn", ["rules.require=[dilated_conv]"], "dilated conv"),
    "require-gap": ("s10_resnet_custom", ["rules.require=[gap]"], "gap"),
    "min-rf": ("s8_bn", ["rules.min_rf=500"], "receptive field"),
    "params": ("s10_resnet_custom", ["target.max_params=1000"], "parameters"),
    "epochs": ("s8_bn", ["epochs=30"], "epochs"),
    "augment": ("s9_dilated", ["data.augment=[{HorizontalFlip: {}}, {Affine: {}}]"], "augmentation CoarseDropout"),
    "optimizer": ("s10_resnet_custom", ["optimizer={name: sgd, lr: 0.1}"], "optimizer"),
    "scheduler": ("s10_resnet_custom", ["scheduler={name: cosine}"], ("scheduler", "lr peak at epoch")),
    "peak": ("s10_resnet_custom", ["scheduler.pct_start=0.5"], "lr peak at epoch"),
    "batch": ("s10_resnet_custom", ["data.batch_size=256"], "batch size"),
    "layer-pattern": ("s8_bn", ["rules.layer_pattern=C1 C2 c3 P1 C3 C4 c6 P2 C7 C8 C9 GAP c10"], "layer pattern"),
    "augment-args": ("s9_dilated", ["data.augment=[{HorizontalFlip: {}}, {Affine: {}}, {CoarseDropout: "
                                    "{num_holes_range: [1, 1], hole_height_range: [8, 8], hole_width_range: [8, 8], "
                                    "fill: 0}}]"], "augmentation CoarseDropout"),
}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_a_recipe_built_to_break_a_rule_fails_with_that_rule_named(kind):
    recipe, sets, rule = BREAKS[kind]
    bad = broken(check_rules(load_recipe(recipe, sets)))
    assert [r["rule"] for r in bad] == ([rule] if isinstance(rule, str) else list(rule)), bad


def test_the_measured_side_names_the_layer_or_the_argument():
    pattern = check_rules(load_recipe("s8_bn", ["rules.layer_pattern=C1 C2 c3 P1 C3 C4 c6 P2 C7 C8 C9 GAP c10"]))
    row = next(r for r in pattern if r["rule"] == "layer pattern")
    assert row["measured"] == "layer 7 is C (conv5.conv), not c"
    ok = next(r for r in check_rules(load_recipe("s8_bn")) if r["rule"] == "layer pattern")
    assert ok["ok"]
    assert ok["measured"] == "C C c P C C C c P C C C GAP c"
    holes = check_rules(load_recipe("s9_dilated", ["data.augment=[{HorizontalFlip: {}}, {Affine: {}}, {CoarseDropout: "
                                                   "{hole_height_range: [8, 8], hole_width_range: [16, 16], fill: 0}}]"]))
    row = next(r for r in holes if r["rule"] == "augmentation CoarseDropout")
    assert row["measured"] == "num_holes_range=-, hole_height_range=[8, 8], fill=0"


def test_a_maxpool_in_an_s9_net_is_refused_by_train_before_any_step(tmp_path, cli):
    res = cli("train", "s9_dilated", "--set", "model=s8_bn", "--set", "model_args={}", *TINY,
              "--runs-dir", tmp_path / "runs")
    assert res.exit_code == 2, res.output
    assert "breaks the rules of ERA V1 S9" in res.output
    assert "no MaxPool2d" in res.output
    assert "pool1" in res.output
    assert "--break-rules" in res.output
    assert not (tmp_path / "runs").exists()
    res = cli("train", "s9_dilated", "--set", "model=s8_bn", "--set", "model_args={}", *TINY,
              "--set", "epochs=1", "--runs-dir", tmp_path / "runs", "--name", "b", "--break-rules")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs" / "b" / "summary.json").read_text())
    assert any("no MaxPool2d" in x for x in summary["rules_broken"])
    assert summary["reference"]["assignment"] == 85.0
    assert "reference: this run" in res.output


def test_a_break_rules_run_stays_marked_across_a_resume_and_in_compare(tmp_path, cli, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("CIFARCTL_TEST_STOP_AT_STEP", "2")  # stopped mid-epoch, resumed below
    res = cli("train", "s9_dilated", "--set", "model=s8_bn", "--set", "model_args={}", *TINY,
              "--set", "epochs=1", "--runs-dir", runs, "--name", "b", "--break-rules")
    assert res.exit_code != 0, res.output
    assert "stopped" in res.output, res.output
    monkeypatch.delenv("CIFARCTL_TEST_STOP_AT_STEP")
    res = cli("train", "--resume", runs / "b")
    assert res.exit_code == 0, res.output
    summary = json.loads((runs / "b" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert any("no MaxPool2d" in x for x in summary["rules_broken"])
    doc = json.loads(cli("compare", runs, "--json").output)
    assert "broke its rules (--break-rules)" in doc["runs"][0]["marks"]


def test_rules_text_is_shown_not_rendered_in_markdown():
    import re

    from cifarctl.tabular import markdown
    from cifarctl.ui.tables import rules_table

    r = load_recipe("s9_dilated", ['rules.assignment="S9 [a](http://x.example) ![i](http://x.example/i.png)"',
                                   'rules.best_public={acc: 90, source: "![j](http://x.example/j.png) [b](http://y)"}',
                                   'rules.scheduler="[c](http://z)"'])
    md = markdown(rules_table(r, check_rules(r)))
    assert not re.search(r"(?<!\\)\[[^\]]*(?<!\\)\]\(", md), md  # no link or image opens
    assert "S9 \\[a\\](http://x.example)" in md
    assert "\\[c\\](http://z)" in md


def test_an_unknown_layer_kind_in_forbid_is_an_error_naming_the_close_one():
    from cifarctl.errors import RecipeError

    with pytest.raises(RecipeError, match=r"rules.forbid\[0\]: unknown layer kind 'MaxPool2D' \(did you mean 'MaxPool2d'"):
        load_recipe("s9_dilated", ["rules.forbid=[MaxPool2D]"])


@pytest.mark.parametrize("value", ["1", "0", "'yes'", "2.0"])
def test_booleans_are_strict_like_numbers(value):
    from cifarctl.errors import RecipeError

    for key in ("deterministic", "optimizer.nesterov", "tensorboard"):
        with pytest.raises(RecipeError, match=f"{key}: Input should be a valid boolean"):
            load_recipe("s8_bn", [f"{key}={value}"])
    assert load_recipe("s8_bn", ["deterministic=true"]).deterministic is True
