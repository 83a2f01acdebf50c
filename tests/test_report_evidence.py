"""``cifarctl report`` gathers a run's evidence before rendering it: its model is built
once, summarised, given the checkpoint's weights and checked against the rules."""

from __future__ import annotations

import cifarctl.registry as registry


def test_a_report_builds_each_run_s_model_once(tiny_copy, tmp_path, monkeypatch, cli):
    built = []
    real = registry.create_model

    def create_model(name, **kwargs):
        built.append(name)
        return real(name, **kwargs)

    monkeypatch.setattr(registry, "create_model", create_model)
    res = cli("report", tiny_copy, "-o", tmp_path / "rep", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert built == ["s8_bn"]
    text = (tmp_path / "rep" / "README.md").read_text()
    assert "## Rules" in text
    assert "## Misclassified images" in text
