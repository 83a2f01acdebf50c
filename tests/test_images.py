"""Terminal images without true colour (cifarctl.ui.images): the nearest of xterm's 240
colours, and a one-line hint to set COLORTERM, printed once by `data` and `misclassified`."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rich.color import EIGHT_BIT_PALETTE, Color, ColorSystem
from rich.console import Console

from cifarctl.ui.images import colour_hint, colour_mode, image_text, render_images, xterm256

PALETTE = np.array([EIGHT_BIT_PALETTE[i] for i in range(256)])
HINT_256 = "images in 256 colours: set COLORTERM=truecolor if your terminal supports it"


def error(rgb: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    return ((PALETTE[numbers] - rgb) ** 2).sum(-1)


def rich_256(rgb: np.ndarray) -> np.ndarray:
    return np.array([Color.from_rgb(*map(int, p)).downgrade(ColorSystem.EIGHT_BIT).number for p in rgb])


def terminal(monkeypatch, colorterm: str | None, term: str = "xterm-256color") -> Console:
    """A terminal console as the environment describes it (rich reads it when created)."""
    monkeypatch.setenv("TERM", term)
    if colorterm is None:
        monkeypatch.delenv("COLORTERM", raising=False)
    else:
        monkeypatch.setenv("COLORTERM", colorterm)
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    return Console(file=io.StringIO(), force_terminal=True, width=140)


def test_xterm256_is_the_nearest_of_the_cube_and_greys():
    rng = np.random.default_rng(0)
    rgb = np.concatenate([rng.integers(0, 256, (3000, 3)),
                          [[0, 0, 0], [255, 255, 255], [8, 8, 8], [128, 128, 128], [47, 48, 115], [100, 90, 80]]])
    ours = xterm256(rgb)
    assert ours.min() >= 16
    assert ours.max() <= 255
    brute = ((PALETTE[16:][None] - rgb[:, None]) ** 2).sum(-1).argmin(1) + 16
    assert np.array_equal(error(rgb, ours), error(rgb, brute))
    assert xterm256(np.array([[0, 0, 0], [255, 255, 255], [128, 128, 128], [255, 0, 0]])).tolist() == [16, 231, 244, 196]


def test_xterm256_is_closer_than_richs_downgrade_on_pale_colours():
    """rich sends every colour under 15% saturation to grey and never a saturated one to
    grey: photos (CIFAR's are mostly muted) come out posterised."""
    rng = np.random.default_rng(1)
    base = rng.integers(60, 200, (4000, 1))
    pale = np.clip(base + rng.normal(0, 18, (4000, 3)), 0, 255).astype(int)
    ours, theirs = error(pale, xterm256(pale)), error(pale, rich_256(pale))
    assert (ours <= theirs).all()
    assert ours.mean() < 0.8 * theirs.mean()


def test_image_text_in_256_colours():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    spans = list(image_text(img, colours="256").spans)
    assert len(spans) == 6
    for k, span in enumerate(spans):
        r, c = divmod(k, 3)
        assert span.style.color.number == xterm256(img[2 * r, c])
        assert span.style.bgcolor.number == xterm256(img[2 * r + 1, c])
    with pytest.raises(ValueError):
        image_text(img, colours="16")


@pytest.mark.parametrize("colorterm, term, mode, hint", [
    ("truecolor", "xterm-256color", "truecolor", None),
    ("24bit", "screen-256color", "truecolor", None),
    (None, "xterm-256color", "256", HINT_256),   # SSH and tmux: COLORTERM not passed on
    (None, "xterm", "truecolor", "images in 16 colours: set COLORTERM=truecolor if your terminal supports it"),
])
def test_colour_mode_and_hint_from_the_environment(monkeypatch, colorterm, term, mode, hint):
    console = terminal(monkeypatch, colorterm, term)
    assert colour_mode(console) == mode
    assert colour_hint(console) == hint
    assert colour_hint(Console(file=io.StringIO())) is None  # off a terminal: no images, no hint


def test_data_command_hint_once_and_256_colour_cells(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from cifarctl.cli import app, data_cmd

    monkeypatch.setenv("CIFARCTL_DATA_DIR", str(tmp_path / "cache"))
    console = terminal(monkeypatch, None)
    monkeypatch.setattr(data_cmd, "console", console)
    result = CliRunner().invoke(app, ["data", "synthetic:30", "--samples", "3"])
    assert result.exit_code == 0, result.output
    text = console.file.getvalue()
    assert text.count(HINT_256) == 1
    assert "\u2580" in text
    assert "\x1b[38;5;" in text
    assert "48;5;" in text
    assert "38;2;" not in text

    console = terminal(monkeypatch, "truecolor")
    monkeypatch.setattr(data_cmd, "console", console)
    assert CliRunner().invoke(app, ["data", "synthetic:30", "--samples", "3"]).exit_code == 0
    assert "COLORTERM" not in console.file.getvalue()
    assert "38;2;" in console.file.getvalue()


def test_misclassified_gallery_hint_once_and_256_colours(monkeypatch):
    from cifarctl.ui.gallery import show_misclassified

    rng = np.random.default_rng(3)
    items = [SimpleNamespace(index=i, true="cat", pred="dog", confidence=0.9, loss=2.0) for i in range(3)]
    result = SimpleNamespace(items=items, images=rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), cams=None,
                             layer=None, wrong=3, total_wrong=3, total=10, accuracy=70.0,
                             checkpoint=Path("run/checkpoints/best.pt"), sort="confidence", epoch_label="epoch 2")
    console = terminal(monkeypatch, None)
    show_misclassified(console, result, Path("run/misclassified.png"))
    text = console.file.getvalue()
    assert text.count(HINT_256) == 1
    assert "\x1b[38;5;" in text
    assert "38;2;" not in text
    lines = [ln for ln in text.splitlines() if "COLORTERM" in ln]
    assert len(lines) == 1
    assert lines[0].count("\x1b[") <= 2  # one plain dim line


def test_render_images_keeps_true_colour_by_default():
    img = np.zeros((2, 2, 3), np.uint8)
    img[:, :] = (100, 90, 80)
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=40)
    console.print(render_images([img], ["x"]))
    assert "38;2;100;90;80" in console.file.getvalue()
