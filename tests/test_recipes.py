"""Recipe schema: every bundled recipe validates; broken ones fail as specified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cifarctl.cli import app
from cifarctl.errors import RecipeError, UsageError
from cifarctl.bundled import bundled_recipes
from cifarctl.recipe.load import load_recipe, validate_dict

runner = CliRunner()

MINIMAL = "name: t\nmodel: s8_bn\nepochs: 1\n"


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", sorted(bundled_recipes()))
def test_bundled_recipe_validates(name):
    r = load_recipe(name)
    assert r.name == name
    assert r.target.min_test_acc is not None, "every bundled recipe states its assignment's accuracy"
    assert r.target.max_epochs is not None
    assert r.epochs <= r.target.max_epochs


def test_bundled_recipes_cover_every_assignment():
    assert {"s6_dilated", "s8_bn", "s8_gn", "s8_ln", "s9_dilated", "s10_resnet_custom"} <= set(bundled_recipes())


def test_s10_follows_seed_004():
    r = load_recipe("s10_resnet_custom")
    assert r.model == "resnet_custom"
    assert r.optimizer.name == "adam"
    assert r.scheduler.name == "onecycle"
    assert r.scheduler.max_lr == "auto"
    assert r.scheduler.pct_start == pytest.approx(5 / 24, abs=1e-3)
    assert r.scheduler.three_phase is False
    assert r.data.batch_size == 512
    assert r.epochs == 24


def test_unknown_key_names_file_path_and_closest(tmp_path):
    p = write(tmp_path, MINIMAL + "data:\n  batchsize: 64\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(str(p))
    msg = str(exc.value)
    assert str(p) in msg
    assert "data.batchsize" in msg
    assert "batch_size" in msg
    assert exc.value.exit_code == 2


def test_unknown_key_in_tagged_section_suggests(tmp_path):
    p = write(tmp_path, MINIMAL + "scheduler: {name: onecycle, max_lr: 0.1, pct_strat: 0.2}\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(str(p))
    assert "scheduler.pct_strat" in str(exc.value)
    assert "pct_start" in str(exc.value)


def test_every_error_at_once(tmp_path):
    p = write(
        tmp_path,
        "name: t\nmodel: s8_bnn\nepochs: 0\nseeed: 3\n"
        "optimizer: {name: sgd, lr: -1}\ndata: {batch_size: many}\n",
    )
    with pytest.raises(RecipeError) as exc:
        load_recipe(str(p))
    problems = exc.value.problems
    joined = " | ".join(problems)
    for needle in ("epochs", "seeed", "optimizer.lr", "data.batch_size", "s8_bn"):
        assert needle in joined, (needle, joined)
    assert len(problems) >= 5


def test_python_tag_is_refused(tmp_path):
    p = write(tmp_path, MINIMAL + "description: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(str(p))
    assert "python" in str(exc.value)
    assert "line 4" in str(exc.value)
    assert not Path("pwned").exists()


def test_empty_file(tmp_path):
    with pytest.raises(RecipeError, match="empty"):
        load_recipe(str(write(tmp_path, "")))


def test_newer_schema_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="newer"):
        load_recipe(str(write(tmp_path, "schema_version: 99\n" + MINIMAL)))


def test_batch_larger_than_subset(tmp_path):
    p = write(tmp_path, MINIMAL + "data: {batch_size: 512, train_subset: 100}\n")
    with pytest.raises(RecipeError, match="larger than data.train_subset"):
        load_recipe(str(p))


def test_removed_albumentations_argument_is_an_error(tmp_path):
    p = write(
        tmp_path,
        MINIMAL + "data:\n  augment:\n    - CoarseDropout: {max_holes: 1, max_height: 8, max_width: 8, fill_value: 0}\n",
    )
    with pytest.raises(RecipeError) as exc:
        load_recipe(str(p))
    assert "data.augment[0]" in str(exc.value)
    assert "max_holes" in str(exc.value)


def test_unknown_augmentation(tmp_path):
    p = write(tmp_path, MINIMAL + "data:\n  augment:\n    - HorizontalFlipp: {p: 0.5}\n")
    with pytest.raises(RecipeError, match="HorizontalFlip"):
        load_recipe(str(p))


def test_precedence_defaults_file_overrides(tmp_path):
    p = write(tmp_path, MINIMAL + "data: {batch_size: 64}\n")
    r = load_recipe(str(p))
    assert r.data.batch_size == 64
    assert r.data.test_batch_size == 1000  # file < default
    r = load_recipe(str(p), ["data.batch_size=32", "optimizer.lr=0.5", "scheduler.name=cosine"])
    assert r.data.batch_size == 32
    assert r.optimizer.lr == 0.5
    assert r.scheduler.name == "cosine"


def test_override_is_validated(tmp_path):
    p = write(tmp_path, MINIMAL)
    with pytest.raises(RecipeError, match="data.batch_sise"):
        load_recipe(str(p), ["data.batch_sise=3"])
    with pytest.raises(UsageError, match="key.path=value"):
        load_recipe(str(p), ["data.batch_size"])


def test_unknown_recipe_name_suggests():
    with pytest.raises(UsageError, match="s8_bn"):
        load_recipe("s8_bm")


def test_resolved_recipe_round_trips():
    r = load_recipe("s9_dilated")
    again = validate_dict(json.loads(json.dumps(r.to_dict())), "roundtrip")
    assert again == r


def test_cli_recipes_table():
    res = runner.invoke(app, ["recipes"])
    assert res.exit_code == 0, res.output
    for name in ("s8_bn", "s10_resnet_custom", "resnet_custom"):
        assert name in res.output


def test_cli_recipes_show_and_error(tmp_path):
    res = runner.invoke(app, ["recipes", "s8_gn", "--set", "epochs=3"])
    assert res.exit_code == 0
    assert "epochs: 3" in res.output
    bad = write(tmp_path, MINIMAL + "epochz: 3\n")
    res = runner.invoke(app, ["recipes", str(bad)])
    assert res.exit_code == 2
    assert "epochz" in res.output
    assert "Traceback" not in res.output


def test_a_yaml_typo_is_reported_at_its_own_line(tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text('name: x\nepochs: 3\nmodel: "s8_bn\noptimizer: {name: sgd}\n')  # quote never closed on line 3
    res = cli("recipes", str(bad))
    assert res.exit_code == 2
    assert "line 3, column 8: while scanning a quoted scalar" in res.output
