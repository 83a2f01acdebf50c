"""Everything a report interpolates from a run folder is escaped: the README parses into
the expected sections, with no live HTML, no link it did not make and no control bytes."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from markdown_it import MarkdownIt

HOSTILE = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[click](javascript:alert(1))",
    "# Heading injected", "```\nfenced", "line one\nline two", "`tick` ``double``", "a | b | c",
    "\x1b]0;title\x07\x1b[2J\rover", "1. list", "> quote", "**bold** _it_",
]


@pytest.fixture(scope="module")
def trained(tiny_copy):
    return tiny_copy


def _walk(tokens):
    for t in tokens:
        yield t
        yield from _walk(t.children or [])


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_in_a_run_folder_stays_text(hostile, trained, tmp_path, cli):
    folder_name = "run " + "".join(c for c in hostile.replace("/", "_").replace("\n", " ") if c.isprintable())[:60]
    run = tmp_path / folder_name
    shutil.copytree(trained, run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["description"], recipe["assignment"] = hostile, hostile
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    env = json.loads((run / "env.json").read_text())
    env["command"] = ["cifarctl", "train", "s8_bn", "--set", f"description={hostile}"]
    (run / "env.json").write_text(json.dumps(env))
    res = cli("report", str(run), "-o", str(tmp_path / "rep"))
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "README.md").read_text()
    assert not any(c in text for c in "\x1b\x07\r"), "control bytes in the README"
    tokens = list(_walk(MarkdownIt("commonmark").enable("table").parse(text)))
    own = ("<details><summary>", "</details>")  # the report's own collapsible layer table
    assert not [t.content for t in tokens if t.type in ("html_block", "html_inline")
                and not t.content.strip().startswith(own)]
    hrefs = [t.attrs.get("href") or t.attrs.get("src") for t in tokens if t.type in ("link_open", "image")]
    assert all(h.startswith("images/") for h in hrefs), hrefs
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    for section in ("Target and result", "Model", "Training", "Analysis", "Reproduce"):
        assert section in headings, headings
    assert len([h for h in headings if h.startswith("Heading injected")]) == 0


@pytest.mark.parametrize("hostile", [HOSTILE[i] for i in (0, 2, 3, 4, 5, 8)], ids=range(6))
def test_hostile_text_in_a_report_of_several_runs_stays_text(hostile, trained, tmp_path, cli):
    """The compact report of several runs: group labels, the settings that differ, the
    folds' summaries and the findings interpolate names and recipe texts too."""
    safe = "".join(c for c in hostile.replace("/", "_").replace("\n", " ") if c.isprintable())[:40]
    for i, epochs in ((1, None), (2, 3)):
        run = tmp_path / "runs" / f"run{i} {safe}"
        shutil.copytree(trained, run)
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        recipe["description"], recipe["assignment"] = hostile, hostile
        if epochs:  # another set-up: two groups, a table of the settings that differ
            recipe["epochs"], recipe["model_args"] = epochs, {"dropout": 0.1}
        (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    res = cli("report", str(tmp_path / "runs"), "-o", str(tmp_path / "rep"))
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "README.md").read_text()
    assert not any(c in text for c in "\x1b\x07\r"), "control bytes in the README"
    tokens = list(_walk(MarkdownIt("commonmark").enable("table").parse(text)))
    html = [t.content for t in tokens if t.type in ("html_block", "html_inline")]
    assert all(h.strip().startswith(("<details><summary>", "</details>")) and "<script" not in h
               and "<img" not in h for h in html), html
    hrefs = [t.attrs.get("href") or t.attrs.get("src") for t in tokens if t.type in ("link_open", "image")]
    assert all(h.startswith("images/") for h in hrefs), hrefs
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings[:2] == [headings[0], "Findings"]
    assert "Reproduce" in headings
    assert not [h for h in headings if h.startswith("Heading injected")]
