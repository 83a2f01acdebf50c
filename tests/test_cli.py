"""The installed command: start-up without torch, version, errors as one line."""

from __future__ import annotations

import os
import shutil
import tempfile
import subprocess
import sys

import cifarctl
import pytest


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cifarctl", *args], capture_output=True, text=True, timeout=120, **kw
    )


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys\n"
        "from cifarctl.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
        "assert 'albumentations' not in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_version():
    res = run("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"cifarctl {cifarctl.__version__}"


def test_console_script_is_installed():
    exe = shutil.which("cifarctl")
    assert exe, "the cifarctl console script is not on PATH (pip install -e .)"
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for cmd in ("models", "summary", "recipes", "data", "train", "eval"):
        assert cmd in res.stdout


def test_unknown_model_is_one_line_exit_2():
    res = run("summary", "resnet_custon")
    assert res.returncode == 2
    assert "resnet_custom" in res.stderr
    assert "Traceback" not in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1


def test_debug_shows_traceback():
    res = run("--debug", "summary", "resnet_custon")
    assert res.returncode != 0
    assert "Traceback" in res.stderr


@pytest.mark.slow
def test_bundled_recipes_after_non_editable_install(tmp_path):
    """Build a wheel and check the recipes are inside it (what a non-editable install gets)."""
    import zipfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), root],
        capture_output=True, text=True, timeout=300,
    )
    if res.returncode != 0 and "hatchling" in (res.stderr + res.stdout):
        res = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), root],
            capture_output=True, text=True, timeout=300,
        )
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("cifarctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cifarctl/_recipes/s8_bn.yaml" in names
    assert "cifarctl/_recipes/s10_resnet_custom.yaml" in names


def test_set_without_equals_says_key_value(cli):
    res = cli("train", "s8_bn", "--set", "epochs", "1")
    assert res.exit_code == 2
    assert "write --set KEY=VALUE" in res.output
    assert "unexpected extra argument" not in res.output


@pytest.mark.parametrize("argv", [["train", "s8_bnn"], ["summary", "s8_bnn"], ["lr-find", "resnet_customm"]])
def test_a_mistyped_name_is_answered_before_torch_is_imported(argv):
    code = (
        "import sys\n"
        "from cifarctl.cli import main\n"
        f"sys.argv = ['cifarctl', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "assert 'torch' not in sys.modules and 'cifarctl.recipe' not in sys.modules, 'imported'\n"
        "sys.exit(code)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "did you mean" in res.stderr


def test_the_suite_keeps_out_of_the_users_home():
    """conftest gives the test run its own HOME and cache folder (checked again at the end);
    the xdist workers share the cache folder of the process that started them."""
    from cifarctl.fsutil import default_cache_dir

    home, cache = os.environ["HOME"], str(default_cache_dir())
    assert home.startswith(tempfile.gettempdir())
    assert "cifarctl-tests-" in home
    assert cache.startswith(tempfile.gettempdir())
    assert "cifarctl-tests-" in cache


def test_an_option_given_without_its_value_names_its_choices(cli, tmp_path):
    res = cli("eval", str(tmp_path), "--tta")
    assert res.exit_code == 2
    assert "--tta' requires an argument: one of none, flip, flip_translate (e.g. --tta flip)" in res.output


def test_every_option_the_readme_shows_bare_is_a_flag():
    """The README's command table writes ``(`--tta flip`)`` for an option that takes a value:
    one shown bare must work bare."""
    import re
    from pathlib import Path

    import typer.main

    from cifarctl.cli import app

    group = typer.main.get_command(app)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    checked = 0
    for name, cell in re.findall(r"^\| `cifarctl (\S+)[^`]*` \| (.*) \|$", readme, re.M):
        for opt in re.findall(r"`(--[a-z-]+)`", cell):
            param = next(p for p in group.commands[name].params if opt in p.opts or opt in p.secondary_opts)
            assert param.is_flag or opt in param.secondary_opts, f"README: `cifarctl {name} ... {opt}` needs a value"
            checked += 1
    assert checked >= 1  # --gradcam


def test_a_missing_yaml_named_like_a_bundled_recipe_says_so(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("train", "s8_bn.yaml")
    assert res.exit_code == 2
    assert "recipe file s8_bn.yaml does not exist; the bundled recipe is named without .yaml: s8_bn" in res.output
    assert "without .yaml" not in cli("train", "mine.yaml").output


def test_models_shows_the_params_the_bundled_recipe_trains(cli):
    import json
    import re
    from pathlib import Path

    rows = {r["name"]: r for r in json.loads(cli("models", "--json").stdout)}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for recipe, params in re.findall(r"^\| `(\w+)` \| ([\d,]+) \|", readme, re.M):
        from cifarctl.bundled import bundled_recipes
        from cifarctl.recipe.load import load_recipe

        model = load_recipe(str(bundled_recipes()[recipe])).model
        row = rows.get(model) or next(r for r in rows.values() if model in r["aliases"])
        trained = row["recipe_params"].get(recipe, row["params"])
        assert f"{trained:,}" == params, (recipe, trained, params)
    assert rows["s9_dilated"]["recipe_params"] == {"s9_dilated": 185_184}
    assert "185,184 (s9_dilated)" in cli("models", "s9", "--format", "md").stdout


def test_the_readme_installs_the_cpu_torch_before_the_package_and_names_the_fast_tests():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert readme.index("download.pytorch.org/whl/cpu") < readme.index('pip install -e ".[dev]"')
    assert 'python -m pytest -q -m "not slow"' in readme
