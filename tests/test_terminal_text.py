"""Untrusted text reaches the terminal shown, never obeyed: a hostile run folder name and
hostile fields in its files, through compare (table, markdown, JSON), eval and report, give
no ESC, BEL or CR byte in the output, no traceback, and JSON that keeps the string intact."""

from __future__ import annotations

import json
import shutil

import pytest

HOSTILE = ["\x1b]0;pwned\x07", "\x1b[2J", "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "over\rwrite",
           "[bold]markup[/bold]", "a[/x]b"]


@pytest.fixture(scope="module")
def trained(tiny_copy):
    return tiny_copy


def _clean(out: str) -> None:
    assert not any(c in out for c in "\x1b\x07\r"), repr(out[:300])
    assert "Traceback" not in out


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_is_shown_not_obeyed(hostile, trained, tmp_path, cli):
    run = tmp_path / f"run{hostile}"
    shutil.copytree(trained, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["status"] = f"completed{hostile}"
    (run / "summary.json").write_text(json.dumps(summary))
    for argv in (["compare", str(run)], ["compare", str(run), "--format", "md"], ["eval", str(run)],
                 ["report", str(run), "-o", str(tmp_path / "rep")]):
        res = cli(*argv)
        assert res.exit_code == 0, (argv, res.output)
        _clean(res.output)
    res = cli("compare", str(run), "--json")
    _clean(res.output)
    doc = json.loads(res.output)
    assert doc["runs"][0]["name"] == run.name  # the string intact, escaped only by JSON


@pytest.mark.parametrize("name", ["[link=http:evil]s8", "s8\x1b[2J"])
def test_a_recipe_name_with_markup_or_control_characters_is_refused(name, cli):
    res = cli("recipes", "s8_bn", "--set", f"name={name}")
    assert res.exit_code == 2
    _clean(res.output)
