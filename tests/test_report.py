"""cifarctl report: a README.md whose every link opens, whose every table parses into the
numbers the other commands print as JSON, and which is written without data too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import copy_run, parse_markdown, train_tiny
from markdown_it import MarkdownIt
from PIL import Image


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run) -> Path:
    root = tmp_path_factory.mktemp("report-runs")
    copy_run(tiny_run, root / "s8_bn-a")  # seed 1, the recipe's
    train_tiny(root, "s8_bn-b", "--seed", "2")
    train_tiny(root, "s8_gn-a", "--seed", "1", recipe="s8_gn")
    return root


def md_tables(text: str) -> list[list[list[str]]]:
    """Every table as GitHub renders it (markdown-it with tables), as rows of cell texts."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables, rows, row = [], None, None
    for t in tokens:
        if t.type == "table_open":
            rows = []
        elif t.type == "tr_open":
            row = []
        elif t.type == "inline" and row is not None:
            row.append(t.content)
        elif t.type == "tr_close":
            rows.append(row)
            row = None
        elif t.type == "table_close":
            tables.append(rows)
    return tables


def check_links(readme: Path) -> list[Path]:
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme.read_text())
    assert links
    out = []
    for link in links:
        png = readme.parent / link
        assert not Path(link).is_absolute() and png.is_file(), link
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width >= 300 and im.height >= 200, (link, im.size)
        out.append(png)
    return out


def test_one_run(cli, runs, tmp_path):
    run = runs / "s8_bn-a"
    out = tmp_path / "rep"
    res = cli("report", run, "-o", out)
    assert res.exit_code == 0, res.output
    readme = out / "README.md"
    assert f"wrote {readme}" in res.output
    text = readme.read_text()
    headings = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert headings == ["# s8_bn: S8", "## Target and result", "## Rules", "## Model", "## Data and augmentation", "## Training",
                        "## Evaluation", "## Misclassified images", "## Analysis", "## Reproduce"]
    pngs = {p.name for p in check_links(readme)}
    assert pngs == {"samples.png", "augmented.png", "curves.png", "confusion.png", "misclassified.png"}
    # S8 asks for 10 misclassified images per model as a 5x2 grid (rules.misclassified_grid)
    from cifarctl.analysis.misclassified import grid_size

    assert "The 10 most confident mistakes" in text
    with Image.open(out / "images" / "misclassified.png") as im:
        assert im.size[1] == grid_size(10, False, 5)[1] and im.size[0] >= grid_size(10, False, 5)[0]
    tables = md_tables(text)
    assert len(tables) == len(parse_markdown(text))  # the renderer's tables are GitHub's tables

    # target: the same verdicts as train's summary.json
    summary = json.loads((run / "summary.json").read_text())
    target = next(t for t in tables if t[0] == ["target", "required", "measured", "result"])
    assert [r[3] for r in target[1:]] == ["PASS" if c["passed"] else "FAIL" for c in summary["target"]["checks"]]
    # this run beside the seed's figure, the assignment's threshold and the best public (train's last line)
    ref = next(t for t in tables if t[0][0] == "this run")
    assert ref[1] == [f"{summary['best_test_acc']:.2f} %", "71.89 %", "70.00 %", "77.30 %"]
    # model: summary --json's layers and totals
    doc = json.loads(cli("summary", "s8_bn", "--json").stdout)
    full = next(t for t in tables if t[0][0] == "Layer" and len(t) - 1 == len(doc["layers"]))
    assert [(r[0], r[3], r[6].rstrip("*")) for r in full[1:]] == [
        (x["name"], f"{x['params']:,}" if x["params"] else "-", str(x["rf"])) for x in doc["layers"]]
    assert f"final receptive field **{doc['receptive_field']} px**" in text
    # evaluation: eval --json of the best checkpoint
    ev = json.loads(cli("eval", run, "--which", "best", "--json").stdout)
    per = next(t for t in tables if t[0] == ["class", "correct", "total", "accuracy"])
    assert [int(r[1]) for r in per[1:]] == [c["correct"] for c in ev["per_class"]]
    assert f"accuracy {ev['accuracy']:.2f}%" in text
    # the epoch log is metrics.jsonl
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    log = next(t for t in tables if t[0][0] == "epoch")
    assert [float(r[4]) for r in log[1:]] == [round(m["test_acc"], 2) for m in rows]
    assert "cifarctl train s8_bn" in text and "--seed 1" in text


def test_same_runs_same_readme(cli, runs, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("report", runs / "s8_bn-a", "-o", a).exit_code == 0
    assert cli("report", runs / "s8_bn-a", "-o", b).exit_code == 0
    strip = lambda p: re.sub(r"_Generated by .*_", "", (p / "README.md").read_text())  # noqa: E731
    assert strip(a) == strip(b)


def test_three_runs_two_recipes(cli, runs, tmp_path):
    out = tmp_path / "rep3"
    res = cli("report", runs, "-o", out)
    assert res.exit_code == 0, res.output
    text = (out / "README.md").read_text()
    assert text.startswith("# Report: s8_bn, s8_gn\n") and "## Comparison" in text
    for name in ("s8_bn-a", "s8_bn-b", "s8_gn-a"):
        assert f"## {name}: S8" in text
    check_links(out / "README.md")
    assert (out / "images" / "comparison.png").is_file()
    cmp = json.loads(cli("compare", runs, "--json").stdout)
    tables = md_tables(text)
    groups = next(t for t in tables if t[0][0] == "group")
    bn = next(g for g in cmp["groups"] if g["recipe"] == "s8_bn")
    row = next(r for r in groups[1:] if r[0] == "s8_bn")
    assert row[2] == "2" and row[4] == f"{bn['best_mean']:.2f} ± {bn['best_std']:.2f}"


def test_without_data_the_rest_is_written(cli, runs, tmp_path):
    out = tmp_path / "nodata"
    res = cli("report", runs / "s8_bn-a", "-o", out, "--data", str(tmp_path / "missing.tar.gz"))
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output
    text = (out / "README.md").read_text()
    assert text.count("_Unavailable: the data") == 3
    assert "## Training" in text and "## Analysis" in text and "Target" in text
    assert {p.name for p in check_links(out / "README.md")} == {"curves.png"}


def test_report_usage_errors(cli, tmp_path):
    res = cli("report", tmp_path / "nothing")
    assert res.exit_code == 2 and "no run folders" in res.output


def test_a_broken_run_folder_is_skipped_with_a_line(cli, runs, tmp_path):
    import shutil

    root = tmp_path / "mixed"
    shutil.copytree(runs / "s8_bn-a", root / "s8_bn-a")
    shutil.copytree(runs / "s8_bn-b", root / "s8_bn-b")
    (root / "s8_bn-b" / "recipe.yaml").write_text("name: s8_bn\nepochs: [not a number\n")
    res = cli("report", root, "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert "skipped" in res.output and "s8_bn-b" in res.output
    text = (tmp_path / "out" / "README.md").read_text()
    assert "## s8_bn-a: S8" in text and "## s8_bn-b:" not in text
    assert "Skipped folders:" in text


@pytest.mark.parametrize("steps,check", [
    ([{"HorizontalFlip": {"p": 1.0}}], "mirror"),    # a batched step: the device path
    ([{"ToGray": {"p": 1.0}}], "grey"),              # no batched version: albumentations per image
    ([], "same"),
])
def test_augmented_samples_undo_the_normalisation(steps, check):
    import numpy as np

    from cifarctl.analysis.samples import augment_for_display

    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    out = augment_for_display(x, steps, None, seed=0)
    assert out.dtype == np.uint8 and out.shape == x.shape
    if check == "mirror":
        assert np.array_equal(out, x[:, :, ::-1])
    elif check == "grey":
        assert np.array_equal(out[..., 0], out[..., 1]) and not np.array_equal(out, x)
    else:
        assert np.array_equal(out, x)


def test_the_reproduce_command_names_the_data_when_it_was_not_the_download():
    from types import SimpleNamespace

    from cifarctl.ui.report import command_of

    recipe = SimpleNamespace(name="s8_bn")
    env = {"command": ["/x/cifarctl", "train", "s8_bn", "--set", "epochs=1"]}
    assert command_of(env, recipe, 1, "/data/cifar10-jpeg.tar.xz") == \
        "cifarctl train s8_bn --set epochs=1 --data /data/cifar10-jpeg.tar.xz"
    assert command_of(env, recipe, 1, "cifar10") == "cifarctl train s8_bn --set epochs=1"
    given = {"command": ["cifarctl", "train", "s8_bn", "--data", "/d"]}
    assert command_of(given, recipe, 1, "/d") == "cifarctl train s8_bn --data /d"
    assert command_of({}, recipe, 3, "/my data") == "cifarctl train s8_bn --seed 3 --data '/my data'"


def test_a_reduced_run_says_so_and_draws_no_fitting_conclusion(tmp_path, cli):
    from helpers import train_tiny

    run = train_tiny(tmp_path / "runs", "short", "--set", "epochs=1")
    env = json.loads((run / "env.json").read_text())  # in-process, argv is pytest's: as the CLI writes it
    env["command"] = ["/venv/bin/cifarctl", "train", "s8_bn", "--set", "epochs=1"]
    (run / "env.json").write_text(json.dumps(env))
    res = cli("report", str(run), "-o", str(tmp_path / "rep"))
    assert res.exit_code == 0, res.output
    assert "1 epoch," in res.output and "1 epochs" not in res.output
    text = (tmp_path / "rep" / "README.md").read_text()
    assert "**Reduced run**: 1 of the recipe's 20 epochs" in text and "epochs=1" in text
    assert "normalised with the recipe's constants (`data.normalize`), mean (0.4914, 0.4822, 0.4465)" in text
    analysis = text.split("Analysis", 1)[1]
    assert "no verdict on fitting" in analysis
    assert "under-fitting" not in analysis and "over-fitting" not in analysis and "larger model" not in analysis


def test_fitting_is_judged_only_from_enough_epochs():
    from cifarctl.analysis.findings import gap_finding

    rows = [{"epoch": e, "train_acc": 40.0 + e, "test_acc": 50.0 + e} for e in range(1, 3)]
    assert "no verdict on fitting from 2 epochs" in gap_finding(rows)
    rows = [{"epoch": e, "train_acc": 40.0 + e, "test_acc": 50.0 + e} for e in range(1, 9)]
    assert "under-fitting" in gap_finding(rows) and "no verdict" in gap_finding(rows, judge=False)


def test_the_groups_caption_is_printed_once(tmp_path, cli):
    from helpers import train_tiny

    runs = [train_tiny(tmp_path / "runs", f"seed{s}", "--seed", str(s), "--set", "epochs=1") for s in (1, 2)]
    res = cli("report", *map(str, runs), "-o", str(tmp_path / "rep"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "README.md").read_text().count("same settings but the seed") == 1
