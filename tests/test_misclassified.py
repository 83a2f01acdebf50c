"""`cifarctl misclassified`: the picks are really wrong, the PNG grid, Grad-CAM, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cifarctl.errors import UsageError
from cifarctl.analysis.gradcam import default_layer, gradcam, jet, overlay
from cifarctl.analysis.misclassified import find_misclassified, grid_shape, grid_size, write_grid
from cifarctl.registry import create_model

# the trained run (a module fixture) serves every test: one worker runs them
pytestmark = pytest.mark.xdist_group("test_misclassified")


def _invoke(*args: str):
    import cifarctl.cli.misclassified_cmd  # noqa: F401  (registers the command)
    from cifarctl.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_cache_dir):
    """A run trained by `cifarctl train` for one epoch on synthetic data (a few seconds)."""
    import cifarctl.cli.train_cmd  # noqa: F401  (registers `train`)

    runs = tmp_path_factory.mktemp("runs")
    res = _invoke("train", "s8_bn", "--data", "synthetic:512:200", "--device", "cpu",
                  "--runs-dir", runs, "--name", "tiny", "--set", "epochs=1",
                  "--set", "data.batch_size=64", "--set", "data.test_batch_size=100")
    assert res.exit_code == 0, res.output
    run = runs / "tiny"
    assert (run / "checkpoints" / "best.pt").is_file()
    return run


def _recompute(run_dir, indices):
    """Softmax and predictions of the checkpoint's model on those test images, from scratch."""
    from cifarctl.data import load_cifar
    from cifarctl.checkpoints import load_checkpoint

    ckpt = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    model = create_model(ckpt["model_name"], **ckpt["model_args"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    recipe = ckpt["recipe"]
    arrays = load_cifar(ckpt["data_source"], test_subset=recipe["data"]["test_subset"],
                        seed=recipe["seed"], progress=False)
    x = torch.from_numpy(arrays.test_x[indices]).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(ckpt["normalize"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(ckpt["normalize"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = model((x - mean) / std).softmax(1)
    return probs, arrays.test_y[indices], arrays.test_x[indices], list(arrays.classes)


def test_picks_are_misclassified_with_the_stated_confidence(run_dir):
    r = find_misclassified(run_dir, n=12, device="cpu")
    assert 0 < len(r.items) <= 12
    assert r.total == 200
    assert r.total_wrong >= len(r.items)
    idx = [m.index for m in r.items]
    probs, y, images, classes = _recompute(run_dir, idx)
    for k, m in enumerate(r.items):
        assert m.true == classes[y[k]]
        assert m.pred == classes[int(probs[k].argmax())]
        assert m.pred != m.true
        assert m.confidence == pytest.approx(float(probs[k].max()), abs=1e-5)
        assert m.loss == pytest.approx(float(-torch.log(probs[k, y[k]])), abs=1e-4)
    assert np.array_equal(r.images, images)
    conf = [m.confidence for m in r.items]
    assert conf == sorted(conf, reverse=True)
    # the same predictions as `cifarctl eval`
    from cifarctl.analysis.evaluate import evaluate_checkpoint

    ev = evaluate_checkpoint(run_dir, which="best", device="cpu", write=False)
    assert ev["images"] == r.total
    assert ev["accuracy"] == pytest.approx(100.0 * (r.total - r.total_wrong) / r.total)


def test_sort_by_loss_and_filters(run_dir):
    r = find_misclassified(run_dir, n=8, sort="loss", device="cpu")
    losses = [m.loss for m in r.items]
    assert losses == sorted(losses, reverse=True)
    first = r.items[0]
    only = find_misclassified(run_dir, n=50, true=first.true.upper(), pred=first.pred, device="cpu")
    assert only.items
    assert all(m.true == first.true and m.pred == first.pred for m in only.items)
    assert only.wrong == len(only.items) or len(only.items) == 50
    with pytest.raises(UsageError, match="valid classes: airplane, automobile"):
        find_misclassified(run_dir, true="kat", device="cpu")


def test_png_grid_geometry(run_dir, tmp_path):
    r = find_misclassified(run_dir, n=7, device="cpu")
    assert len(r.items) == 7
    png = write_grid(r, tmp_path / "grid.png")
    with Image.open(png) as im:
        im.load()
        assert im.format == "PNG"
        assert grid_shape(7) == (5, 2)
        assert im.size == grid_size(7, with_cam=False)
        px = np.asarray(im)
    # the first tile, under the title, is the first image upscaled x4 (nearest)
    from cifarctl.analysis.misclassified import MARGIN, SCALE, TITLE_H

    top = TITLE_H + MARGIN
    tile = px[top:top + 32 * SCALE, MARGIN:MARGIN + 32 * SCALE]
    assert np.array_equal(tile[::SCALE, ::SCALE], r.images[0])


def _ink_rows(px: np.ndarray) -> list[int]:
    """Rows of an RGB array holding anything but the white background."""
    return [int(i) for i in np.nonzero((px < 250).any(axis=(1, 2)))[0]]


def test_png_title_names_run_checkpoint_accuracy_and_layer(run_dir, tmp_path):
    from cifarctl.analysis.misclassified import MARGIN, TITLE_H

    r = find_misclassified(run_dir, n=3, gradcam=True, true="cat", device="cpu")
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert r.checkpoint.name == "best.pt"
    assert r.epoch == best["epoch"] == 1  # the default: best
    line1, line2 = r.title_lines()
    assert line1 == (f"tiny  ·  best.pt, epoch 1  ·  test accuracy {r.accuracy:.2f}% "
                     f"({r.total_wrong} of 200 wrong)")
    assert line2 == (f"showing {len(r.items)} of {r.wrong} misclassified (true cat), most confident first  ·  "
                     "Grad-CAM: conv9.conv")
    png = write_grid(r, tmp_path / "titled.png")
    with Image.open(png) as im:
        im.load()
        px = np.asarray(im.convert("RGB"))
    untitled_height = grid_size(len(r.items), with_cam=True)[1] - TITLE_H
    assert px.shape[0] == untitled_height + TITLE_H  # taller than the grid alone by the title
    # both title lines hold ink, in the band above the first row of tiles; the band under
    # the text is blank, and the tiles start where they should
    ink = _ink_rows(px[:TITLE_H + MARGIN])
    assert ink, ink
    assert min(ink) < MARGIN + 8, ink
    assert max(ink) > MARGIN + 18, ink
    assert max(ink) < TITLE_H + MARGIN - 2, ink
    assert px.shape[1] >= MARGIN + len(line2) * 5  # wide enough for the title
    assert (px[TITLE_H + MARGIN:TITLE_H + MARGIN + 4, MARGIN:MARGIN + 8] < 250).any()  # first tile


def test_png_title_of_a_mid_epoch_last_checkpoint(run_dir, tmp_path):
    r = find_misclassified(run_dir, n=2, which="last", sort="loss", device="cpu")
    assert r.checkpoint.name == "last.pt"
    r.epoch, r.step_in_epoch = 1, 3  # as a stopped run's last.pt would be
    assert r.title_lines()[0].startswith("tiny  ·  last.pt, epoch 2 at step 3  ·  test accuracy")
    assert r.title_lines()[1] == f"showing 2 of {r.wrong} misclassified, highest loss first"


def test_gradcam_maps(run_dir, tmp_path):
    r = find_misclassified(run_dir, n=4, gradcam=True, device="cpu")
    assert r.layer == "conv9.conv"  # the last conv with a spatial output (conv10 is 1x1 after GAP)
    assert r.cams.shape == (4, 32, 32)
    assert r.cams.min() >= 0
    assert r.cams.max() <= 1
    for cam in r.cams:
        assert cam.std() > 1e-3  # not constant
    png = write_grid(r, tmp_path / "cam.png")
    with Image.open(png) as im:
        assert im.size == grid_size(4, with_cam=True)
    custom = find_misclassified(run_dir, n=2, gradcam=True, layer="conv5", device="cpu")
    assert custom.layer == "conv5"
    assert custom.cams.shape == (2, 32, 32)
    with pytest.raises(UsageError, match="conv9.conv"):
        find_misclassified(run_dir, gradcam=True, layer="conv9.con", device="cpu")


def test_gradcam_follows_the_evidence():
    """Only the top-left quarter of the images holds anything: the heat is there."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.act = torch.nn.ReLU()
            self.fc = torch.nn.Linear(4, 2)
            torch.nn.init.constant_(self.fc.weight, 1.0)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).mean((2, 3)))

    torch.manual_seed(0)
    model = Net()
    x = torch.zeros(3, 3, 32, 32)
    x[:, :, :16, :16] = torch.rand(3, 3, 16, 16) + 0.5
    cams = gradcam(model, x, "act", torch.zeros(3, dtype=torch.long))
    assert cams.shape == (3, 32, 32)
    for c in cams:
        assert float(c[:18, :18].sum()) > 0.95 * float(c.sum()) > 0
        assert float(c[20:, 20:].max()) < 1e-6
        assert float(c.max()) == pytest.approx(1.0)
    assert all(p.grad is None for p in model.parameters())
    assert default_layer(model) == "conv"


def test_colour_map_and_overlay():
    ramp = jet(np.linspace(0, 1, 5))
    assert ramp.dtype == np.uint8
    assert ramp.shape == (5, 3)
    assert ramp[0, 2] > ramp[0, 0]
    assert ramp[-1, 0] > ramp[-1, 2]  # blue -> red
    img = np.zeros((32, 32, 3), np.uint8)
    out = overlay(img, np.ones((32, 32)), alpha=0.5)
    assert out.shape == (32, 32, 3)
    assert out[0, 0, 0] > 0


# ------------------------------------------------------------------------- command
def test_cli_json_and_png(run_dir, tmp_path):
    out = tmp_path / "m.png"
    res = _invoke("misclassified", run_dir, "--n", "6", "--sort", "loss", "--device", "cpu",
                  "--out", out, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert len(data["items"]) == 6
    assert data["png"] == str(out)
    assert set(data["items"][0]) == {"index", "true", "pred", "confidence", "loss"}
    with Image.open(out) as im:
        assert im.size == grid_size(6, with_cam=False)


def test_cli_plain_output_and_default_png(run_dir):
    res = _invoke("misclassified", run_dir / "checkpoints" / "last.pt", "--n", "3", "--gradcam",
                  "--device", "cpu")
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if "true " in ln and "pred " in ln]
    assert len(lines) == 3
    assert "%" in lines[0]
    assert (run_dir / "misclassified_gradcam.png").is_file()
    assert str(run_dir / "misclassified_gradcam.png") in res.output.replace("\n", "")
    # --help names the file each way writes
    help_text = " ".join(_invoke("misclassified", "--help").output.split())
    assert "default: misclassified.png in the run folder; misclassified_gradcam.png with --gradcam" in help_text


def test_cli_bad_class_and_layer_exit_2(run_dir):
    res = _invoke("misclassified", run_dir, "--pred", "kat", "--device", "cpu")
    assert res.exit_code == 2
    assert "cat" in res.output
    assert "truck" in res.output
    res = _invoke("misclassified", run_dir, "--gradcam", "--layer", "nope", "--device", "cpu")
    assert res.exit_code == 2
    assert "layer" in res.output
    res = _invoke("misclassified", run_dir.parent / "missing", "--device", "cpu")
    assert res.exit_code == 2
