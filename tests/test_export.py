"""cifarctl export: ONNX, TorchScript and torch.export files that compute what the run does, with a model card."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def run(tiny_copy) -> Path:
    return tiny_copy


def _export(run: Path, fmt: str) -> dict:
    from typer.testing import CliRunner

    from cifarctl.cli import app

    res = CliRunner().invoke(app, ["export", str(run), "--format", fmt, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def onnx_result(run) -> dict:
    """The ONNX export, made once (the dynamo exporter takes ~20 s on 2 cores)."""
    return _export(run, "onnx")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported-program"])
def test_export_passes_its_parity_check_and_writes_a_model_card(run, fmt, request):
    result = request.getfixturevalue("onnx_result") if fmt == "onnx" else _export(run, fmt)
    folder = run / "export" / fmt
    p = result["parity"]
    assert p["passed"]
    assert p["images"] == 64
    assert p["top1_agreement"] == 1.0
    assert p["max_abs_logit_diff"] <= 1e-4
    assert json.loads((folder / "export.json").read_text())["parity"] == p
    card = (folder / "MODEL_CARD.md").read_text()
    for needle in ("43,266 parameters", "chosen on the **test** split", "RGB", "0.4914", "| 9 | truck |",
                   "fingerprint `synthetic:256:64`", "Intended use and limits", "max |Δlogit|"):
        assert needle in card, needle
    assert "\nname: s8_bn\n" in (folder / "recipe.yaml").read_text()
    assert Path(result["file"]).parent == folder
    assert Path(result["file"]).is_file()


def test_the_onnx_file_runs_any_batch_size_on_its_own(run, onnx_result):
    """The ONNX file, read by onnxruntime alone, gives the model's logits for a batch of 3 and of 64."""
    import onnxruntime as ort
    import torch

    from cifarctl.analysis.inference import load_for_inference

    inf = load_for_inference(run, which="best", device="cpu")
    x = inf.normalize(inf.split("test")[0]).numpy()
    session = ort.InferenceSession(onnx_result["file"], providers=["CPUExecutionProvider"])
    for n in (3, 64):
        got = session.run(None, {"input": x[:n]})[0]
        with torch.no_grad():
            ref = inf.model(torch.from_numpy(x[:n])).numpy()
        assert got.shape == (n, 10)
        assert np.abs(got - ref).max() < 1e-4


def test_a_failed_parity_check_exits_1_with_the_figures_and_writes_nothing(cli, run, tmp_path, monkeypatch):
    from cifarctl.analysis import export

    real = export._runner

    def off_by_a_bit(fmt, path):
        f, what = real(fmt, path)
        return (lambda x: f(x) + 0.01), what

    monkeypatch.setattr(export, "_runner", off_by_a_bit)
    out = tmp_path / "out"
    res = cli("export", run, "--format", "torchscript", "--out", out)
    assert res.exit_code == 1
    assert "max |Δlogit| 0.01" in res.output
    assert "top-1 agreement" in res.output
    assert "nothing written" in res.output
    assert not out.exists()


def test_missing_onnx_packages_are_one_line_with_the_extra(cli, run, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    res = cli("export", run, "--format", "onnx", "--out", tmp_path / "o")
    assert res.exit_code == 2
    assert "cifarctl[export]" in res.output
    assert "onnxscript" in res.output
    assert not (tmp_path / "o").exists()
    assert cli("export", run, "--format", "tflite").exit_code == 2
