"""Tables that survive where they are used: a pipe keeps every cell whole, a narrow
terminal drops secondary columns (never a key cell cut to "…"), and ``--format md``
reads back into the numbers ``--json`` gives."""

from __future__ import annotations

import io
import json
import os
import subprocess

import pytest
from helpers import CLI, parse_markdown
from rich.console import Console

from cifarctl.tabular import Column, Tabular, markdown


def piped(*args: str) -> str:
    """stdout of the real command into a pipe, with no COLUMNS in its environment (pytest's
    own terminal set-up can leave one in the C environment that children inherit)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=True, env=env).stdout


# ------------------------------------------------------------------------ the base
def test_markdown_round_trip_escapes_pipes_and_aligns_numbers():
    tab = Tabular("t", [Column("name"), Column("n", "right")])
    tab.add_row("a|b", "1,234")
    tab.add_row("back\\slash", "5")
    text = markdown(tab)
    assert text.splitlines()[0] == "### t"
    assert "|:--|--:|" in text
    (parsed,) = parse_markdown(text)
    assert parsed == {"header": ["name", "n"], "rows": [["a|b", "1,234"], ["back\\slash", "5"]]}


def test_add_row_checks_the_cell_count():
    tab = Tabular(None, [Column("a"), Column("b")])
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        tab.add_row("x")


def test_narrow_terminal_drops_secondary_columns_first():
    from cifarctl.ui.render import print_table

    tab = Tabular("wide", [Column("key"), Column("detail", drop=2), Column("value", "right"),
                           Column("extra", drop=1)])
    for i in range(3):
        tab.add_row(f"row{i}", "d" * 50, f"{123456789 * i:,}", "e" * 30)
    buf = io.StringIO()
    print_table(Console(file=buf, width=60, force_terminal=True, color_system=None), tab)
    out = buf.getvalue()
    assert "…" not in out
    assert "246,913,578" in out
    assert "row2" in out
    assert "d" * 50 not in out
    assert "e" * 30 in out  # the most expendable goes first, and only as needed
    assert "hidden to fit 60 columns: detail;" in out
    assert max(len(ln) for ln in out.splitlines() if ln.startswith(("┃", "│"))) <= 60
    buf = io.StringIO()
    print_table(Console(file=buf, width=30, force_terminal=True, color_system=None), tab)
    words = " ".join(buf.getvalue().split())  # the note word-wraps on a terminal
    assert "hidden to fit 30 columns: detail, extra;" in words
    assert "246,913,578" in buf.getvalue()

    buf = io.StringIO()  # a wide one keeps them all, with no note
    print_table(Console(file=buf, width=200, force_terminal=True, color_system=None), tab)
    assert "d" * 50 in buf.getvalue()
    assert "hidden" not in buf.getvalue()


# ------------------------------------------------------------------------ summary
def _rows_by_name(layers: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in layers}


def test_summary_piped_keeps_every_rf_and_param_in_full(cli):
    """The issue's case: `cifarctl summary s9_dilated > file` cut RF to … and params to 19,4…."""
    doc = json.loads(cli("summary", "s9_dilated", "--json").stdout)
    out = piped("summary", "s9_dilated")
    assert "…" not in out
    assert "\x1b" not in out
    body = [ln for ln in out.splitlines() if ln.startswith("│")]
    body = body[:len(doc["layers"]) + 9]  # the Rules table follows
    assert len(body) == len(doc["layers"]) + 9  # every layer, then the nine totals
    for line, layer in zip(body, doc["layers"]):
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert cells[0] == layer["name"].rsplit(".", 1)[-1]
        assert cells[3] == (f"{layer['params']:,}" if layer["params"] else "-")
        assert cells[6].rstrip("*") == str(layer["rf"])
    assert f"{doc['total_params']:,}" in out
    assert f"{doc['receptive_field']} px" in out


def test_summary_markdown_has_the_numbers_of_json(cli):
    doc = json.loads(cli("summary", "s9_dilated", "--json").stdout)
    res = cli("summary", "s9_dilated", "--format", "md")
    assert res.exit_code == 0, res.output
    layers, totals, rules = parse_markdown(res.stdout)
    assert rules["header"] == ["rule", "required", "measured", "result"]
    assert len(rules["rows"]) == len(doc["rules"])
    assert layers["header"] == ["Layer", "Type", "Output", "Params", "MACs", "Kernel", "RF", "Jump", "Note"]
    by_name = _rows_by_name(doc["layers"])
    assert [r[0] for r in layers["rows"]] == [r["name"] for r in doc["layers"]]
    for row in layers["rows"]:
        want = by_name[row[0]]
        assert row[1] == want["type"]
        assert row[2] == "x".join(map(str, want["output_shape"][1:]))
        assert row[3] == (f"{want['params']:,}" if want["params"] else "-")
        assert row[6].rstrip("*") == str(want["rf"])
        assert row[7] == str(want["jump"])
    tot = dict(totals["rows"])
    assert tot["Total params"] == f"{doc['total_params']:,}"
    assert tot["Receptive field"] == f"{doc['receptive_field']} px (jump {doc['jump']})"
    assert not res.stdout.startswith("recipe ")  # nothing but the document


@pytest.mark.parametrize("model,noted", [("s8_gn", "GroupNorm"), ("s8_ln", "GroupNorm"), ("s8_bn", None)])
def test_per_sample_norm_nets_get_an_rf_footnote(cli, model, noted):
    doc = json.loads(cli("summary", model, "--json").stdout)
    out = cli("summary", model, "--format", "md").stdout
    if noted is None:
        assert doc["notes"] == []
        assert "RF note" not in out
    else:
        (note,) = doc["notes"]
        assert noted in note
        assert "every input pixel" in note
        assert f"RF note: {note}" in out


# ------------------------------------------------------------------------ recipes, models, data
def test_recipes_piped_is_one_line_per_recipe():
    """The issue's case: `cifarctl recipes | cat` became ~60 lines of letter-wrapped cells."""
    from cifarctl.bundled import bundled_recipes

    out = piped("recipes")
    body = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert len(body) == len(bundled_recipes())
    assert "…" not in out
    assert any("≥ 71.89 %, ≤ 20 ep, ≤ 50,000 params" in ln for ln in body)


def test_models_markdown(cli):
    rows = json.loads(cli("models", "s8*", "--json").stdout)
    (tab,) = parse_markdown(cli("models", "s8*", "--format", "md").stdout)
    assert [r[1] for r in tab["rows"]] == [f"{r['params']:,}" for r in rows]


def test_data_accepts_data_and_shows_test_split_stats(cli):
    res = cli("data", "--data", "synthetic:200:100", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["train"] == 200
    assert doc["test"] == 100
    assert set(doc["test_stats"]) == {"mean", "std", "min", "max"}
    assert doc["test_stats"] != doc["train_stats"]
    md = cli("data", "--data", "synthetic:200:100", "--format", "md").stdout
    titles = [ln for ln in md.splitlines() if ln.startswith("### ")]
    assert titles == ["### images per class", "### train channels, scaled to \\[0, 1\\]",
                      "### test channels, scaled to \\[0, 1\\]"]
    test_tab = parse_markdown(md)[2]
    assert test_tab["rows"][0] == ["R", *(f"{doc['test_stats'][k][0]:.4f}" for k in ("mean", "std", "min", "max"))]
    res = cli("data", "synthetic:200:100", "--data", "synthetic:10:10")
    assert res.exit_code == 2
    assert "two data sources" in res.output


# ------------------------------------------------------------------------ eval
@pytest.fixture(scope="module")
def run(tiny_copy):
    return tiny_copy


def test_eval_markdown_has_the_numbers_of_json(cli, run):
    doc = json.loads(cli("eval", run, "--json").stdout)
    res = cli("eval", run, "--format", "md")
    assert res.exit_code == 0, res.output
    assert f"**accuracy {doc['accuracy']:.2f}%" in res.stdout
    per, cm, *rest = parse_markdown(res.stdout)
    assert [r[0] for r in per["rows"]] == doc["classes"]
    assert [int(r[1]) for r in per["rows"]] == [c["correct"] for c in doc["per_class"]]
    assert [[int(v) for v in r[1:]] for r in cm["rows"]] == doc["confusion"]
    if doc["most_confused"]:
        assert [int(r[2]) for r in rest[0]["rows"]] == [c["count"] for c in doc["most_confused"]]
