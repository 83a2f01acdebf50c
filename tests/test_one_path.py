"""One path for one job (issue 10): one inference path, one MODEL|RECIPE resolver."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

# the speedrun run (a module fixture) serves both items: one worker runs them
pytestmark = pytest.mark.xdist_group("test_one_path")

# TINY-sized speedrun (airbench94 style, eval_tta: flip_translate) on synthetic data.
SPEEDRUN = ["--set", "data.source=synthetic:256:200", "--set", "data.batch_size=64", "--set", "epochs=1",
            "--set", "data.test_batch_size=50", "--set", "model_args.widths=[16, 32, 32]"]


def _invoke(*args):
    from cifarctl.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# ------------------------------------------------------------------------ one inference path
@pytest.fixture(scope="module")
def tta_run(tmp_path_factory, data_cache_dir):
    runs = tmp_path_factory.mktemp("tta-runs")
    res = _invoke("train", "speedrun", *SPEEDRUN, "--runs-dir", runs, "--name", "sr", "--device", "cpu")
    assert res.exit_code == 0, res.output
    return runs / "sr"


@pytest.mark.parametrize("which", ["last", "best"])
def test_misclassified_implies_the_accuracy_eval_reports_for_a_tta_recipe(tta_run, which):
    ev = json.loads(_invoke("eval", tta_run, "--which", which, "--json", "--device", "cpu").stdout)
    assert ev["tta"] == "flip_translate"
    mc = json.loads(_invoke("misclassified", tta_run, "--which", which, "--n", "200", "--json",
                            "--device", "cpu").stdout)
    assert mc["total"] == ev["images"] == 200
    assert mc["accuracy"] == pytest.approx(ev["accuracy"])
    assert mc["total_wrong"] == ev["images"] - sum(c["correct"] for c in ev["per_class"])


# ------------------------------------------------------------------------ one resolver
@pytest.fixture
def built(monkeypatch):
    """Every (model name, model_args) a command builds, in order."""
    import cifarctl.registry as registry

    calls = []
    real = registry.create_model

    def recording(name, **kwargs):
        calls.append((name, dict(kwargs)))
        return real(name, **kwargs)

    monkeypatch.setattr(registry, "create_model", recording)
    return calls


def test_summary_and_lr_find_of_a_name_that_is_both_build_the_same_model(built, tmp_path, data_cache_dir):
    from cifarctl.recipe.load import load_recipe

    recipe = load_recipe("s8_bn")
    assert recipe.model == "s8_bn"
    assert recipe.model_args  # a recipe and a model of the same name
    summary = _invoke("summary", "s8_bn")
    assert summary.exit_code == 0, summary.output
    summary_builds = list(built)
    built.clear()
    lr_find = _invoke("lr-find", "s8_bn", "--num-iter", "5", "--data", "synthetic", "--device", "cpu",
                      "--set", "data.train_subset=64", "--batch-size", "32", "--runs-dir", tmp_path)
    assert lr_find.exit_code == 0, lr_find.output
    assert summary_builds
    assert built
    assert summary_builds[0] == built[0] == ("s8_bn", dict(recipe.model_args))
    # the header says which was used
    assert "recipe s8_bn" in summary.output
    assert "recipe s8_bn" in lr_find.output
