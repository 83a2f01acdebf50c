"""Plain lines at 80 columns wrap between words, never inside a number or a path; untrusted
text in them is shown with its control characters escaped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from cifarctl.training.lines import epoch_line, start_line
from cifarctl.ui.render import print_line, print_table, shown

START = {"model": "s8_bn", "params": 43266, "device": "cpu", "epochs": 20, "epoch": 0, "steps": 781,
         "train_images": 50000, "test_images": 10000, "resumed_step": 0, "step_in_epoch": 0, "history": []}
EPOCH = {"epoch": 12, "epochs": 20, "train_loss": 0.7123, "train_acc": 75.23, "test_loss": 0.6021,
         "test_acc": 79.11, "lr": 0.0123, "seconds": 123.1, "train_seconds": 110.0, "images_per_s": 812.3,
         "best": True}
MISCLASSIFIED = ("runs/s8_bn-20261207-001817/checkpoints/best.pt (best.pt, epoch 20): 2,106 of 10,000 test "
                 "images wrong (78.94% accuracy); all 2,106 of them, showing 25 by confidence")


def _render(text: str, width: int) -> list[str]:
    out = io.StringIO()
    print_line(Console(file=out, width=width, force_terminal=True, color_system=None), text)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("text", [start_line(START), epoch_line(EPOCH), MISCLASSIFIED], ids=["start", "epoch", "miscl"])
@pytest.mark.parametrize("width", [80, 140])
def test_no_token_is_split_across_lines(text, width):
    lines = _render(text, width)
    assert all(len(ln) <= width for ln in lines), lines
    assert [tok for ln in lines for tok in ln.split()] == text.split()


def test_off_a_terminal_a_line_is_one_line():
    out = io.StringIO()
    print_line(Console(file=out, width=80), epoch_line(EPOCH) * 2)
    assert out.getvalue().count("\n") == 1


def test_control_characters_are_shown_not_obeyed():
    hostile = "run\x1b]0;pwned\x07\x1b[2J\rname\n"
    assert shown(hostile) == "run\\x1b]0;pwned\\x07\\x1b[2J\\x0dname\\x0a"
    lines = _render(f"skipped {hostile}: [bold]x[/]", 80)
    assert not any(c in "".join(lines) for c in "\x1b\x07\r")
    assert "[bold]x[/]" in "".join(lines)


def test_the_lr_find_legend_keeps_each_label_with_its_number():
    from types import SimpleNamespace

    from cifarctl.ui.charts import lr_find_key

    result = SimpleNamespace(suggestions={"steepest": 1.1e-2, "valley": 1.6e-3, "min_div_10": 7.8e-3},
                             recommended_by="valley")
    assert "\n" not in lr_find_key(result, 200)
    narrow = lr_find_key(result, 80).splitlines()
    assert len(narrow) == 3
    assert all(ln.rstrip()[-1].isdigit() or ln.endswith("(recommended)") for ln in narrow)


# ------------------------------------------------------------------------ every table cell, every status line
def _tokens_whole(rendered: str, texts: list[str]) -> list[str]:
    """The tokens of ``texts`` that do not appear whole in ``rendered`` (a table's box
    characters and padding stripped from each line first)."""
    import re

    flat = " ".join(re.sub(r"[│┃┏┓┗┛┡┩└┘├┤┬┴┼━─╇╈╋╍]", " ", ln) for ln in rendered.splitlines()).split()
    return [tok for text in texts for tok in shown(text).split() if tok not in flat]


def _terminal(width: int) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=True, color_system=None), out


def test_the_recipes_table_keeps_every_name_whole_at_80_columns():
    from cifarctl.bundled import bundled_recipes
    from cifarctl.recipe.load import load_recipe
    from cifarctl.ui.tables import recipes_table, show_recipes

    recipes = {n: load_recipe(str(p)) for n, p in bundled_recipes().items()}
    for width in (80, 140):
        con, out = _terminal(width)
        show_recipes(con, recipes)
        text = out.getvalue()
        assert all(len(ln) <= width for ln in text.splitlines())
        shown_cells = [c for row in recipes_table(recipes).rows for c in row]
        header = text.splitlines()[2]
        kept = [c.name for c in recipes_table(recipes).columns if f" {c.name} " in header]
        assert {"name", "model", "epochs", "target"} <= set(kept), header
        assert not _tokens_whole(text, [row[0] for row in recipes_table(recipes).rows])  # the names typed
        assert "epochs" in header
        assert not any(c for c in shown_cells if c + "…" in text)


@pytest.mark.parametrize("recipe", ["s6_dilated", "s6_dilated_lite", "s8_bn", "s9_dilated"])
def test_every_rules_cell_wraps_between_words_at_80_columns(recipe):
    from cifarctl.analysis.rules import check_rules
    from cifarctl.bundled import bundled_recipes
    from cifarctl.recipe.load import load_recipe
    from cifarctl.ui.tables import rules_table

    r = load_recipe(str(bundled_recipes()[recipe]))
    tab = rules_table(r, check_rules(r))
    con, out = _terminal(80)
    print_table(con, tab)
    text = out.getvalue()
    assert all(len(ln) <= 80 for ln in text.splitlines())
    assert not _tokens_whole(text, [c for row in tab.rows for c in row])


def test_an_error_on_a_terminal_wraps_between_words(cli, monkeypatch, tmp_path):
    import sys

    con, out = _terminal(80)
    monkeypatch.setattr(sys.modules["cifarctl.cli.app"], "err_console", con)
    monkeypatch.chdir(tmp_path)
    folder = Path("runs") / "s10_resnet_custom-20261207-001817"
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("")
    res = cli("eval", str(folder), "--which", "last")
    assert res.exit_code == 2
    lines = out.getvalue().splitlines()
    message = " ".join(ln.strip() for ln in lines)
    assert len(lines) > 1
    assert all(len(ln) <= 80 for ln in lines)
    assert message.startswith("error: ")
    assert str(folder) in message.split() or f"{folder}:" in message.split(), lines


def test_a_status_line_of_summary_wraps_between_words(cli, monkeypatch):
    import sys

    con, out = _terminal(80)
    monkeypatch.setattr(sys.modules["cifarctl.cli.summary_cmd"], "console", con)
    assert cli("summary", "s9_dilated").exit_code == 0
    first = out.getvalue().split("\n\n")[0]
    from cifarctl.recipe.load import resolve_model_or_recipe

    described = resolve_model_or_recipe("s9_dilated").describe(settings=False)  # 130 characters
    # a line longer than the terminal is cut by the terminal wherever column 80 falls
    assert all(len(ln) <= 80 for ln in first.splitlines()), first
    assert not _tokens_whole(first, [described]), first


@pytest.mark.parametrize("width", [80, 140])
def test_a_table_title_is_one_line_where_the_terminal_has_room(width):
    from cifarctl.tabular import Column, Tabular

    tab = Tabular("Groups: finished runs, same settings but the seed (± sample std over seeds)",
                  [Column("group"), Column("n", "right"), Column("best", "right")])
    tab.add_row("s8_bn", "3", "79.66 ± 0.22")
    con, out = _terminal(width)
    print_table(con, tab)
    assert out.getvalue().splitlines()[0].strip() == tab.title
