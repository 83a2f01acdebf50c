"""Plain lines at 80 columns wrap between words, never inside a number or a path; untrusted
text in them is shown with its control characters escaped."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cifarctl.training.lines import epoch_line, start_line
from cifarctl.ui.render import print_line, shown

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
    assert not any(c in "".join(lines) for c in "\x1b\x07\r") and "[bold]x[/]" in "".join(lines)


def test_the_lr_find_legend_keeps_each_label_with_its_number():
    from types import SimpleNamespace

    from cifarctl.ui.charts import lr_find_key

    result = SimpleNamespace(suggestions={"steepest": 1.1e-2, "valley": 1.6e-3, "min_div_10": 7.8e-3},
                             recommended_by="valley")
    assert "\n" not in lr_find_key(result, 200)
    narrow = lr_find_key(result, 80).splitlines()
    assert len(narrow) == 3 and all(ln.rstrip()[-1].isdigit() or ln.endswith("(recommended)") for ln in narrow)
