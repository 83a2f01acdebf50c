"""benchmarks/reproduce.py: every row says whether it trained the recipe as bundled, decided
by comparing resolved recipes (not by hand), and the bundled-recipe table uses only those."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cifarctl.recipe.load import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_run_of_the_bundled_recipe_is_bundled_whatever_its_seed_and_texts():
    rep = _module()
    trained = load_recipe("s8_gn", ["seed=3", "data.source=/somewhere/cifar10-jpeg.tar.xz",
                                    "rules.best_public.acc=1.0", "description=edited"]).to_dict()
    assert rep.bundled_differences(trained, "s8_gn", 3, None) == []


def test_an_override_that_changes_training_is_not_bundled():
    rep = _module()
    trained = load_recipe("s8_gn", ["model_args.dropout=0.05"]).to_dict()
    diffs = rep.bundled_differences(trained, "s8_gn", 1, None)
    assert diffs == ["model_args.dropout: 0.05 -> 0.0"]
    assert rep.bundled_differences(trained, "no_such_recipe", 1, None) is None


def test_the_bundled_table_keeps_one_run_per_seed_and_only_bundled_rows():
    rep = _module()
    row = dict(recipe="s8_bn", status="completed", best_public=79.57, final_test_acc=1.0)
    rows = [dict(row, run="old", seed=1, bundled_now=True, best_test_acc=70.0, started="2026-01-01"),
            dict(row, run="new", seed=1, bundled_now=True, best_test_acc=80.0, started="2026-02-01"),
            dict(row, run="s2", seed=2, bundled_now=True, best_test_acc=82.0, started="2026-01-05"),
            dict(row, run="try", seed=3, bundled_now=False, best_test_acc=99.0, started="2026-03-01")]
    table = rep.bundled_table(rows)
    line = next(ln for ln in table if ln.startswith("| s8_bn "))
    assert "| 2 (1,2) | 81.00 ± 1.41 |" in line
    assert "new, s2" in line
