"""The tree's rules, checked by the tools made for them (run by the test command, so CI runs
them too): import-linter's layer contract (pyproject.toml: cli -> ui -> analysis ->
training -> augment | data | models -> base, no cycles) and ruff (pyflakes, and the banned
APIs: a bare torch.load, pickle and yaml.load)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_follow_the_layers():
    res = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                                                "lint_imports_command()"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_ruff_is_clean():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "cifarctl", "tests", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
