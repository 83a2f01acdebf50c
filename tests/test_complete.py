"""Shell completion: recipe and model names, run folders, devices; no torch on a TAB.

The timing is measured by ``benchmarks/bench_completion.py``, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cifarctl.cli import complete

# Runs each case through the real protocol (the variables the bash script of
# `cifarctl --install-completion` sets), in one process, then reports the modules loaded.
SCRIPT = r"""
import contextlib, io, json, os, sys
sys.argv[0] = "cifarctl"
from cifarctl.cli import main
out = {}
for words, cword in json.loads(sys.argv[1]):
    os.environ.update(_CIFARCTL_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main()
        except SystemExit:
            pass
    out[words] = buf.getvalue().split()
print(json.dumps({"completions": out, "loaded": sorted(m for m in ("torch", "pydantic", "yaml", "numpy")
                                                          if m in sys.modules)}))
"""


def make_runs(root: Path) -> None:
    for rel in ("runs/s8_bn-1/checkpoints/last.pt", "runs/s8_gn-2/metrics.jsonl", "runs/sweep/a/summary.json",
                "runs/sweep/b/metrics.jsonl", "runs/lr-find/s8_bn-x/lr_find.json", "runs/.hidden/metrics.jsonl",
                "old/checkpoints/best.pt", "loose.pt", "mine.yaml", "notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()


@pytest.fixture(scope="module")
def tabs(tmp_path_factory):
    """The completions of every case below, from one `cifarctl` process in a folder of runs."""
    root = tmp_path_factory.mktemp("tabs")
    make_runs(root)
    cases = [("cifarctl train s8", 2), ("cifarctl train ", 2), ("cifarctl train --device ", 3),
             ("cifarctl summary res", 2), ("cifarctl lr-find s8", 2), ("cifarctl eval ", 2),
             ("cifarctl misclassified ru", 2), ("cifarctl compare runs/sw", 2),
             ("cifarctl train --resume ", 3), ("cifarctl misclassified x --pred d", 4),
             ("cifarctl recipes s9", 2), ("cifarctl models resnet", 2), ("cifarctl tr", 1),
             ("cifarctl train s8_bn --set data.ba", 4), ("cifarctl lr-find s8_bn --set sched", 4)]
    res = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases)], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_recipe_and_model_names(tabs):
    got = tabs["completions"]
    assert got["cifarctl train s8"] == ["s8_bn", "s8_gn", "s8_ln"]
    assert got["cifarctl train "][:2] == ["s10_resnet_custom", "s6_dilated"]
    assert "mine.yaml" in got["cifarctl train "]
    assert got["cifarctl summary res"] == ["resnet18", "resnet34", "resnet_custom"]
    assert got["cifarctl lr-find s8"] == ["s8", "s8_bn", "s8_gn", "s8_ln"]  # recipe and model s8_bn once
    assert got["cifarctl recipes s9"] == ["s9_dilated"]
    assert got["cifarctl models resnet"] == ["resnet18", "resnet34", "resnet_custom"]
    assert got["cifarctl tr"] == ["train"]


def test_devices_run_folders_and_classes(tabs):
    got = tabs["completions"]
    assert got["cifarctl train --device "][:2] == ["auto", "cpu"]
    assert got["cifarctl eval "] == ["loose.pt", "old", "runs/s8_bn-1", "runs/s8_gn-2"]
    assert got["cifarctl misclassified ru"] == ["runs/s8_bn-1", "runs/s8_gn-2"]
    assert got["cifarctl compare runs/sw"] == ["runs/sweep/a", "runs/sweep/b"]
    assert got["cifarctl train --resume "] == ["old", "runs/s8_bn-1"]  # only those with a checkpoint
    assert got["cifarctl misclassified x --pred d"] == ["deer", "dog"]


def test_set_keys_complete_from_the_schema(tabs):
    from cifarctl.recipe.load import dotted_keys

    got = tabs["completions"]
    assert got["cifarctl train s8_bn --set data.ba"] == ["data.batch_size="]
    assert "scheduler.max_lr=" in got["cifarctl lr-find s8_bn --set sched"]
    assert list(complete.SET_KEYS) == dotted_keys()  # the list a TAB reads is the schema's


def test_a_tab_imports_neither_torch_nor_pydantic(tabs):
    # torch: seconds per TAB; pydantic: typer's value coercion, skipped while completing
    assert tabs["loaded"] == [], tabs["loaded"]


def test_model_names_from_the_source_equal_the_registry():
    from cifarctl.registry import get_entry, list_models

    registered = set(list_models()) | {a for n in list_models() for a in get_entry(n).aliases}
    assert complete.model_names() == sorted(registered)


def test_model_names_read_the_decorators(tmp_path, monkeypatch):
    (tmp_path / "fam.py").write_text(
        "@register_model(name='big', aliases=('b', 'bg'))\ndef f(): pass\n"
        "@registry.register_model\ndef plain(): pass\n"
        "@register_model(assignment='S1')\ndef g(): pass\n"
        "@functools.cache\ndef not_a_model(): pass\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    monkeypatch.setattr(complete, "MODELS_DIR", tmp_path)
    assert complete.model_names() == ["b", "bg", "big", "g", "plain"]


def test_recipe_names_are_the_bundled_ones():
    from cifarctl.bundled import bundled_recipes

    assert complete.recipe_names() == list(bundled_recipes())
    assert complete.complete_recipe("s8_b") == ["s8_bn"]


def test_run_dirs_follow_the_typed_path(tmp_path, monkeypatch):
    make_runs(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert complete.run_dirs("runs/") == ["runs/s8_bn-1", "runs/s8_gn-2", "runs/sweep/a", "runs/sweep/b"]
    assert complete.run_dirs("runs/.") == ["runs/.hidden"]
    assert complete.run_dirs("runs/s8_g") == ["runs/s8_gn-2"]
    assert complete.run_dirs("nope/") == []
    assert complete.run_dirs("x") == []
    assert complete.run_dirs(f"{tmp_path}/r", checkpoints=True) == [f"{tmp_path}/runs/s8_bn-1",
                                                                     f"{tmp_path}/runs/s8_gn-2"]
    assert complete.run_dirs("runs/s8_bn-1/checkpoints/", checkpoints=True) == ["runs/s8_bn-1/checkpoints/last.pt"]
    assert complete.recipe_files("") == ["mine.yaml"]


def test_devices_from_the_driver_and_cuda_visible_devices(tmp_path):
    proc = tmp_path / "gpus"
    for i in range(3):
        (proc / f"0000:0{i}:00.0").mkdir(parents=True)
    assert complete.device_names({}, proc=proc) == ["auto", "cpu", "cuda", "cuda:0", "cuda:1", "cuda:2"]
    assert complete.device_names({"CUDA_VISIBLE_DEVICES": "1"}, proc=proc) == ["auto", "cpu", "cuda", "cuda:0"]
    assert complete.device_names({"CUDA_VISIBLE_DEVICES": ""}, proc=proc) == ["auto", "cpu"]
    assert complete.device_names({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, proc=proc) == ["auto", "cpu", "cuda", "cuda:0"]
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (dev / name).touch()
    assert complete.device_names({}, proc=tmp_path / "none", dev=dev) == ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]
    assert complete.device_names({}, proc=tmp_path / "none", dev=tmp_path / "none") == ["auto", "cpu"]


def test_a_folder_name_with_control_characters_is_never_offered(tmp_path, monkeypatch):
    (tmp_path / "runs" / "ok" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "bad\x1b]0;x\x07" / "checkpoints").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert complete.run_dirs("runs/") == ["runs/ok"]
