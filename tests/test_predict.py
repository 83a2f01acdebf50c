"""cifarctl predict: the user's own image files, prepared as the run's data, predicted as eval predicts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def run(tiny_copy) -> Path:
    return tiny_copy


def _eval_probs(run: Path, tta: str | None = None):
    from cifarctl.analysis.inference import load_for_inference, predict_cached

    inf = load_for_inference(run, which="best", device="cpu")
    res = predict_cached(inf, "test", tta=tta, keep=False)
    return inf, res


@pytest.mark.parametrize("tta", ["none", "flip_translate"])
def test_a_test_image_as_png_is_predicted_as_eval_classifies_it(cli, run, tmp_path, tta):
    inf, res = _eval_probs(run, tta)
    x = inf.data.test_x
    picks = [0, 5, 17, 63]
    for i in picks:
        Image.fromarray(x[i]).save(tmp_path / f"t{i:02d}.png")
    out = cli("predict", run, tmp_path, "--json", "--top", "10", "--tta", tta, "--device", "cpu")
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert [Path(p["path"]).name for p in got["predictions"]] == [f"t{i:02d}.png" for i in picks]
    probs = res["probs"].cpu().numpy()
    for i, p in zip(picks, got["predictions"]):
        mine = {t["class"]: t["probability"] for t in p["top"]}
        theirs = {c: float(probs[i][k]) for k, c in enumerate(inf.classes)}
        assert mine.keys() == theirs.keys()
        assert max(abs(mine[c] - theirs[c]) for c in mine) <= 1e-5
        assert p["top"][0]["class"] == inf.classes[int(res["preds"][i])]


def test_probabilities_equal_eval_before_rounding(run):
    """The unrounded path: predict_files' probabilities against eval's (1e-5 is the bound; they agree closer)."""
    from cifarctl.analysis.predict import predict_arrays

    inf, res = _eval_probs(run)
    x = torch.from_numpy(inf.data.test_x[:7].transpose(0, 3, 1, 2).copy())
    probs = predict_arrays(inf, x, "none")
    assert torch.allclose(probs, res["probs"][:7], atol=1e-5, rtol=0)


def test_any_image_is_made_rgb_and_resized_by_the_shorter_side(tmp_path):
    from cifarctl.data.images import decode

    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 20:60] = 255  # a white centre square 40x40 between black sides
    Image.fromarray(wide).save(tmp_path / "wide.png")
    arr, err = decode("wide.png", str(tmp_path / "wide.png"), 32)
    assert err is None
    assert arr.shape == (32, 32, 3)
    assert arr.dtype == np.uint8
    # the centre crop is the white square: the black sides are cut (only bicubic's edge shading), not squeezed in
    assert arr[:, 2:-2].min() == 255
    assert arr.min() > 200
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: composited over white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    arr, _ = decode("clear.png", str(tmp_path / "clear.png"), 32)
    assert (arr == 255).all()
    Image.fromarray(np.full((10, 20), 100, np.uint8), "L").save(tmp_path / "grey.webp", lossless=True)
    arr, _ = decode("grey.webp", str(tmp_path / "grey.webp"), 48)
    assert arr.shape == (48, 48, 3)
    assert (arr == 100).all()
    same = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(same).save(tmp_path / "same.png")
    assert (decode("same.png", str(tmp_path / "same.png"), 32)[0] == same).all()  # no resampling at the size


def test_bad_inputs_are_one_line_each_and_the_rest_is_predicted(cli, run, tmp_path, monkeypatch):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((64, 48, 3), 128, np.uint8)).save(good)
    (tmp_path / "notes.png").write_text("not an image")
    os.mkfifo(tmp_path / "pipe.png")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:  # sparse: 1 GB declared, nothing written
        f.truncate(1 << 30)
    bomb = tmp_path / "bomb.png"
    Image.new("L", (200, 200)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 40,000 pixels are then a bomb
    res = cli("predict", run, good, tmp_path / "notes.png", tmp_path / "pipe.png", huge, bomb,
              tmp_path / "missing.png", "--json")
    assert res.exit_code == 2
    got = json.loads(res.stdout)
    assert [p["path"] for p in got["predictions"]] == [str(good)]
    errors = got["errors"]
    assert len(errors) == 5
    assert all("\n" not in e for e in errors)
    by_file = {Path(e.split(":")[0]).name: e for e in errors}
    assert "corrupt or not an image" in by_file["notes.png"]
    assert "FIFO" in by_file["pipe.png"]
    assert "1,024 MiB" in by_file["huge.png"]
    assert "decompression bomb" in by_file["bomb.png"]
    assert "no such file" in by_file["missing.png"]


def test_table_markdown_gradcam_and_progress_off_a_terminal(cli, run, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (50 + 10 * i, 40, 3), dtype=np.uint8)).save(folder / f"p{i}.jpg")
    res = cli("predict", run, folder, "--gradcam", tmp_path / "cam.png")
    assert res.exit_code == 0, res.output
    assert "p0.jpg" in res.stdout
    assert "probability" in res.stdout
    assert "\x1b" not in res.stdout
    assert str(folder / "p2.jpg") in res.stdout  # off a terminal every cell in full
    with Image.open(tmp_path / "cam.png") as im:
        assert im.format == "PNG"
        assert im.size[0] > 3 * 128
    md = cli("predict", run, folder / "p1.jpg", "--format", "md", "--top", "2").stdout
    assert "| image | class | probability | next |" in md


def test_bad_option_and_output_path_are_refused_before_predicting(cli, run, tmp_path):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    assert cli("predict", run, tmp_path / "a.png", "--tta", "spin").exit_code == 2
    os.mkfifo(tmp_path / "out.png")
    res = cli("predict", run, tmp_path / "a.png", "--gradcam", tmp_path / "out.png")
    assert res.exit_code == 2
    assert "FIFO" in res.output
