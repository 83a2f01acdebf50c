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
        assert not Path(link).is_absolute(), link
        assert png.is_file(), link
        with Image.open(png) as im:
            assert im.format == "PNG", (link, im.size)
            assert im.width >= 300, (link, im.size)
            assert im.height >= 200, (link, im.size)
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
        assert im.size[1] == grid_size(10, False, 5)[1]
        assert im.size[0] >= grid_size(10, False, 5)[0]
    tables = md_tables(text)
    assert len(tables) == len(parse_markdown(text))  # the renderer's tables are GitHub's tables

    # target: the same verdicts as train's summary.json
    summary = json.loads((run / "summary.json").read_text())
    target = next(t for t in tables if t[0] == ["target", "required", "measured", "result"])
    assert [r[3] for r in target[1:]] == ["PASS" if c["passed"] else "FAIL" for c in summary["target"]["checks"]]
    # this run beside the seed's figure, the assignment's threshold and the best public (train's last line)
    ref = next(t for t in tables if t[0][0] == "this run")
    assert ref[1] == [f"{summary['best_test_acc']:.2f} %", "71.89 %", "70.00 %", "79.57 %"]
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
    assert "cifarctl train s8_bn" in text
    assert "--seed 1" in text


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
    assert text.startswith("# Report: s8_bn, s8_gn\n")
    assert "## Comparison" in text
    headings = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert headings == ["# Report: s8_bn, s8_gn", "## Findings", "## Comparison", "## Recipe", "### Rules of ERA V1 S8",
                        "## Model", "## Data and augmentation", "## Training", "## s8_bn: mean of 2 seeds",
                        "## s8_gn: 1 run", "## Reproduce"]
    for name, seed in (("s8_bn-a", 1), ("s8_bn-b", 2), ("s8_gn-a", 1)):
        assert f"<details><summary>{name} (seed {seed}): best" in text
    check_links(out / "README.md")
    assert (out / "images" / "comparison.png").is_file()
    cmp = json.loads(cli("compare", runs, "--json").stdout)
    tables = md_tables(text)
    side = next(t for t in tables if t[0][:3] == ["group", "runs", "best test acc %"])
    bn = next(g for g in cmp["groups"] if g["recipe"] == "s8_bn")
    row = next(r for r in side[1:] if r[0] == "s8_bn")
    assert row[1] == "2"
    assert row[2] == f"{bn['best_mean']:.2f} ± {bn['best_std']:.2f}"
    # what every run shares is shown once: one recipe, one model table, one data section
    assert text.count("```yaml") == 1
    assert text.count("| Layer | Type |") == 1
    assert text.count("![training images]") == 1
    differ = next(t for t in tables if t[0] == ["setting", "s8_bn", "s8_gn"])
    assert ["model", "s8_bn", "s8_gn"] in differ
    layers = next(t for t in tables if t[0] == ["layer", "s8_bn", "s8_gn"])
    assert layers[1][1].startswith("BatchNorm2d(")
    assert layers[1][2].startswith("GroupNorm(")
    # each group shows one misclassified grid (its best run's) in the open, the others are folded
    for group in text.split("\n## ")[1:]:
        if group.startswith("s8_"):
            assert group.split("<details>")[0].count("![misclassified images") == 1


def test_a_report_of_several_runs_leads_with_findings_drawn_from_its_tables(cli, runs, tmp_path):
    out = tmp_path / "findings"
    assert cli("report", runs, "-o", out).exit_code == 0
    text = (out / "README.md").read_text()
    findings = text.split("## Findings", 1)[1].split("\n## ", 1)[0]
    tables = md_tables(findings)
    side, per_class = tables[0], tables[1]
    assert side[0] == ["group", "runs", "best test acc %", "final %", "train − test (points)",
                       f"epoch at {70.0:.2f} %", "time"]
    assert per_class[0] == ["class", "s8_bn", "s8_gn", "apart"]
    apart = [float(r[-1]) for r in per_class[1:]]
    assert apart == sorted(apart, reverse=True)
    assert len(apart) == 10
    sentences = [ln[2:] for ln in findings.splitlines() if ln.startswith("- ")]
    assert re.match(r"These are reduced runs \(\d+ of the recipe.s 20 epochs", sentences[0])
    assert all("too short to conclude" in s for s in sentences if " leads " in s or "differ most" in s)
    # every figure a sentence quotes is a cell of the tables beside it
    cells = {c.split(" ± ")[0] for t in tables for row in t[1:] for c in row}
    bn = next(r for r in side[1:] if r[0] == "s8_bn")
    ranking = next(s for s in sentences if s.startswith("Best test accuracy ranks"))
    assert f"s8_bn {bn[2]} %" in ranking
    top = per_class[1]
    diff = next(s for s in sentences if "differ most" in s)
    assert f"on {top[0]}:" in diff
    assert f"({top[-1]} points apart)" in diff
    assert all(n in cells for n in re.findall(r"s8_\w+ (-?\d+\.\d+)", ranking))


def test_a_difference_within_the_seeds_spread_is_too_short_to_conclude():
    from cifarctl.analysis.findings import GroupFigures, group_findings

    def fig(label, best, std, gap=(-1.0, 0.2), epochs=20):
        return GroupFigures(label=label, n=3, over_seeds=True, best=(best, std), final=(best, std), gap=gap,
                            seconds=(60.0, 1.0), epochs=epochs, threshold=70.0, reached=[12, 14, None],
                            per_class={"cat": (best - 20, std), "dog": (best - 10, std)})

    close = group_findings([fig("s8_bn", 79.66, 0.22), fig("s8_gn", 79.40, 0.28)])
    assert "within the seeds' spread (± 0.22 and ± 0.28): too short to conclude" in close[0]
    far = group_findings([fig("s8_bn", 79.66, 0.22), fig("s8_gn", 77.32, 0.28)])
    assert "s8_bn leads s8_gn by 2.34 points, beyond the seeds' spread (± 0.22, ± 0.28): s8_bn is ahead" in far[0]
    assert not any("too short" in s for s in far if "leads" in s)
    assert "s8_bn in 2 of 3 at epoch 13.0 on average (12, 14)" in " ".join(far)
    short = group_findings([fig("s8_bn", 79.66, 0.22), fig("s8_gn", 77.32, 0.28)], reduced="2 of 20 epochs")
    assert short[0].startswith("These are reduced runs (2 of 20 epochs)")
    assert "but from reduced runs: too short to conclude" in short[1]
    one_seed = group_findings([GroupFigures("a", 1, False, (80.0, None), (80.0, None), (1.0, None), (1.0, None), 20,
                                            None), GroupFigures("b", 1, False, (78.0, None), (78.0, None), (1.0, None),
                                                                (1.0, None), 20, None)])
    assert "one seed each, so the spread is unknown: too short to conclude" in one_seed[0]


def test_without_data_the_rest_is_written(cli, runs, tmp_path):
    out = tmp_path / "nodata"
    res = cli("report", runs / "s8_bn-a", "-o", out, "--data", str(tmp_path / "missing.tar.gz"))
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output
    text = (out / "README.md").read_text()
    assert text.count("_Unavailable: the data") == 3
    assert "## Training" in text
    assert "## Analysis" in text
    assert "Target" in text
    assert {p.name for p in check_links(out / "README.md")} == {"curves.png"}


def test_report_usage_errors(cli, tmp_path):
    res = cli("report", tmp_path / "nothing")
    assert res.exit_code == 2
    assert "no run folders" in res.output


def test_a_broken_run_folder_is_skipped_with_a_line(cli, runs, tmp_path):
    import shutil

    root = tmp_path / "mixed"
    shutil.copytree(runs / "s8_bn-a", root / "s8_bn-a")
    shutil.copytree(runs / "s8_bn-b", root / "s8_bn-b")
    (root / "s8_bn-b" / "recipe.yaml").write_text("name: s8_bn\nepochs: [not a number\n")
    res = cli("report", root, "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert "skipped" in res.output
    assert "s8_bn-b" in res.output
    text = (tmp_path / "out" / "README.md").read_text()
    assert "<summary>s8_bn-a (seed 1)" in text
    assert "s8_bn-b (seed" not in text
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
    assert out.dtype == np.uint8
    assert out.shape == x.shape
    if check == "mirror":
        assert np.array_equal(out, x[:, :, ::-1])
    elif check == "grey":
        assert np.array_equal(out[..., 0], out[..., 1])
        assert not np.array_equal(out, x)
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
    assert "1 epoch," in res.output
    assert "1 epochs" not in res.output
    text = (tmp_path / "rep" / "README.md").read_text()
    assert "**Reduced run**: 1 of the recipe's 20 epochs" in text
    assert "epochs=1" in text
    assert "normalised with the recipe's constants (`data.normalize`), mean (0.4914, 0.4822, 0.4465)" in text
    analysis = text.split("Analysis", 1)[1]
    assert "no verdict on fitting" in analysis
    assert "under-fitting" not in analysis
    assert "over-fitting" not in analysis
    assert "larger model" not in analysis


def test_fitting_is_judged_only_from_enough_epochs():
    from cifarctl.analysis.findings import gap_finding

    rows = [{"epoch": e, "train_acc": 40.0 + e, "test_acc": 50.0 + e} for e in range(1, 3)]
    assert "no verdict on fitting from 2 epochs" in gap_finding(rows)
    rows = [{"epoch": e, "train_acc": 40.0 + e, "test_acc": 50.0 + e} for e in range(1, 9)]
    assert "under-fitting" in gap_finding(rows)
    assert "no verdict" in gap_finding(rows, judge=False)


def test_the_groups_caption_is_printed_once(tmp_path, cli):
    from helpers import train_tiny

    runs = [train_tiny(tmp_path / "runs", f"seed{s}", "--seed", str(s), "--set", "epochs=1") for s in (1, 2)]
    res = cli("report", *map(str, runs), "-o", str(tmp_path / "rep"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "README.md").read_text().count("same settings but the seed") == 1
