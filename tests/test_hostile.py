"""Hostile inputs (issue 14): one test per class of input, parametrized over its cases.

- names: a recipe ``name`` / ``--name`` is one safe folder name; a run folder that cannot
  be created is one line naming it;
- the YAML / ``--set`` boundary: alias bombs, deep nesting, binary and Latin-1 files,
  duplicate keys, folders and devices, for every YAML reader (recipes, train, ``--set``,
  compare's and resume's ``recipe.yaml``);
- the schema: every float field of every section is finite, every number field refuses
  booleans (found by walking the pydantic models, so a new field is covered for free);
  ``model_args`` and augmentation geometry are checked with the recipe;
- data: class set, archive checksums, cache validation, pickle labels, links, sizes;
- resume: run id, data key, edited recipe.yaml, one writer at a time, a second signal
  during a save;
- no traceback without ``--debug`` over a corpus of broken inputs for every command;
- every write site (eval.json, the PNGs, lr-find's files, compare --out, the run folder's
  files) on a read-only folder, a full disk or a bad path: one line naming the file; read
  from the source, no write bypasses the helper;
- compare over hostile run folders (values near float's limit, non-finite values, 4 GB
  sparse files, endless lines, link loops, bombs): one line per bad folder, strict JSON;
- checkpoints whose weights or class list do not fit the model: the mismatch in one line;
- eval and misclassified beside a training run: no lock, atomic files; lr-find's options.

Small synthetic data throughout; the few subprocess tests with signals are marked slow.
"""

from __future__ import annotations

import ast
import contextlib
import gzip
import io
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import numpy as np
import pytest
from helpers import CLI, copy_run
from PIL import Image
from pydantic import BaseModel

from cifarctl import CLASSES
from cifarctl.errors import CifarctlError, DataError, RecipeError, UsageError

EXIT_CODES = {1, 2, 3, 4, 130, 143}
FAST = ["--set", "data.source=synthetic:64:20", "--set", "data.batch_size=32", "--set", "epochs=1",
        "--set", "data.test_batch_size=20", "--device", "cpu"]


# ------------------------------------------------------------------------ helpers
@pytest.fixture
def run_cli():
    """The Typer app in-process; returns (exit code, output, exception or None)."""
    from typer.testing import CliRunner

    from cifarctl.cli import app
    from cifarctl.cli.app import state

    runner = CliRunner()

    def invoke(*args):
        state["debug"] = False
        res = runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
        exc = res.exception if not isinstance(res.exception, SystemExit) else None
        return res.exit_code, res.output, exc

    return invoke


def assert_clean_error(code: int, output: str, exc, *needles: str, expect: int | set = 2) -> str:
    """Exit ``expect``, no exception escaped, no traceback, one ``error:`` line holding the needles."""
    assert exc is None, f"{type(exc).__name__}: {exc}\n{output}"
    assert "Traceback" not in output, output
    assert code in (expect if isinstance(expect, set) else {expect}), (code, output)
    lines = [ln for ln in output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run (2 epochs of 2 steps on synthetic:64:20) stopped at step 3, in epoch 2:
    best.pt and last.pt exist and it can be resumed. Made once per module; tests copy it
    (``copy_run``)."""
    from cifarctl.training.run import TrainingInterrupted, run_training

    ENV_STOP_AT = "CIFARCTL_TEST_STOP_AT_STEP"  # tests/faults/sitecustomize.py
    root = tmp_path_factory.mktemp("hostile-runs")
    os.environ[ENV_STOP_AT] = "3"
    try:
        run_training("s8_bn", overrides=["data.source=synthetic:64:20", "data.batch_size=32", "epochs=2",
                                         "data.test_batch_size=20"], runs_dir=root, name="base", device="cpu")
    except TrainingInterrupted:
        pass
    finally:
        del os.environ[ENV_STOP_AT]
    assert (root / "base" / "checkpoints" / "best.pt").is_file()
    return root / "base"


# ------------------------------------------------------------------------ 1. names
BAD_NAMES = {
    "parent": "../../escaped_run", "absolute": "/tmp/x", "nested": "a/b", "dotdot": "..",
    "hidden": ".x", "backslash": "a\\b", "nul": "a\x00b", "newline": "a\nb", "escape": "a\x1b[31m",
    "too-long": "n" * 101, "blank": "   ", "long-utf8": "é" * 60,
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_recipe_name_is_one_safe_folder_name(case, run_cli, tmp_path):
    from cifarctl.recipe.load import load_recipe

    bad = BAD_NAMES[case]
    with pytest.raises(RecipeError) as e:
        load_recipe("s8_bn", [f"name={json.dumps(bad)}"])
    assert "name:" in str(e.value)
    assert e.value.exit_code == 2
    from cifarctl.runs import create_run_dir

    with pytest.raises(UsageError, match="--name") as e:
        create_run_dir(tmp_path / "runs", "s8_bn", name=bad)
    assert "\n" not in str(e.value).replace(repr(bad), "")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    if case in ("parent", "absolute", "nested", "too-long"):  # and through the CLI, nothing written
        runs = tmp_path / "cli-runs"
        code, out, exc = run_cli("train", "s8_bn", *FAST, "--set", f"name={bad}", "--runs-dir", runs)
        assert_clean_error(code, out, exc, "name")
        assert not runs.exists()
        assert not (tmp_path / "escaped_run").exists()


@pytest.mark.parametrize("case", ["read-only", "name-too-long", "file-in-the-way", "disk-full"])
def test_run_folder_that_cannot_be_made_is_one_line(case, tmp_path, monkeypatch):
    import errno

    from cifarctl import runs as runs_mod
    from cifarctl.errors import WriteError

    parent, expect = tmp_path / "runs", 1
    if case == "name-too-long":
        parent, expect = tmp_path / ("d" * 300), 2
    elif case == "file-in-the-way":
        parent.write_text("not a folder")
        expect = 2
    else:
        real = os.mkdir
        err = errno.EROFS if case == "read-only" else errno.ENOSPC

        def failing(path, *a, **k):
            if Path(path).parent == parent:
                raise OSError(err, os.strerror(err), str(path))
            return real(path, *a, **k)

        monkeypatch.setattr(runs_mod.os, "mkdir", failing)
    with pytest.raises(CifarctlError) as e:
        runs_mod.create_run_dir(parent, "s8_bn")
    assert e.value.exit_code == expect
    assert "\n" not in str(e.value)
    assert str(parent)[:40] in str(e.value)
    assert isinstance(e.value, WriteError if expect == 1 else UsageError)


# ------------------------------------------------------------------------ 2. YAML and --set
def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["  l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines)


GOOD = "name: x\nmodel: s8_bn\nepochs: 1\n"
YAML_CASES: dict[str, tuple[Any, str]] = {
    # case: (file content (bytes/str) or a special marker, needle in the error)
    "alias-bomb-under-model_args": (GOOD + "model_args:\n" + _bomb() + "\n", "alias"),
    "alias-chain-depth": (GOOD + "model_args:\n  a0: &a0 [1]\n" +
                          "".join(f"  a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 120)), "levels"),
    "recursive-alias": (GOOD + "model_args: &a {x: *a}\n", "recursive"),
    "deep-nesting-5000": (GOOD + "model_args: {x: " + "[" * 5000 + "]" * 5000 + "}\n", "nested deeper"),
    "deep-block-nesting": (GOOD + "model_args:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(200)),
                           "nested deeper"),
    "duplicate-key": ("name: x\nmodel: s8_bn\nepochs: 1\nepochs: 5\n", "duplicate key 'epochs' (first on line 3"),
    "duplicate-nested-key": (GOOD + "optimizer:\n  name: sgd\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr'"),
    "binary": (b"\x00\x01\x02PK\x03\x04" + bytes(range(256)), "binary"),
    "latin-1": ("name: caf\xe9\nmodel: s8_bn\nepochs: 1\n".encode("latin-1"), "not UTF-8"),
    "python-tag": (GOOD + "model_args: !!python/object/apply:os.system ['true']\n", "python tags"),
    "directory": ("<dir>", "directory"),
    "dev-null": ("<devnull>", "device"),
    "huge-file": ("x: " + "a" * (2 << 20) + "\n", "bytes"),
}


def _yaml_file(tmp_path: Path, case: str, name: str = "r.yaml") -> Path:
    content, _ = YAML_CASES[case]
    if content == "<devnull>":
        return Path("/dev/null")
    path = tmp_path / name
    tmp_path.mkdir(parents=True, exist_ok=True)
    if content == "<dir>":
        path.mkdir(parents=True)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


READERS = ["recipes", "train", "lr-find", "compare-run-folder", "resume-run-folder"]
# Every case through the loader (`recipes` reads a file as train and lr-find do: one
# loader, cifarctl.yamlsafe); the alias bomb through each reader, to prove each uses it.
YAML_READS = [(case, "recipes") for case in YAML_CASES] + \
    [("alias-bomb-under-model_args", reader) for reader in READERS[1:]]


@pytest.mark.parametrize("case,reader", YAML_READS)
def test_every_yaml_reader_is_bounded(case, reader, tmp_path, run_cli, trained):
    needle = YAML_CASES[case][1]
    start = time.monotonic()
    if reader in ("recipes", "train", "lr-find"):
        path = _yaml_file(tmp_path, case)
        runs = tmp_path / "runs"
        args = {"recipes": ["recipes", path], "train": ["train", path, "--runs-dir", runs, "--device", "cpu"],
                "lr-find": ["lr-find", path, "--runs-dir", runs, "--device", "cpu"]}[reader]
        code, out, exc = run_cli(*args)
        line = assert_clean_error(code, out, exc, needle)
        assert str(path) in line
        assert not runs.exists()
    elif reader == "compare-run-folder":
        run = copy_run(trained, tmp_path / "run")
        (run / "recipe.yaml").unlink()
        _yaml_file(run, case, "recipe.yaml")
        code, out, exc = run_cli("compare", run, "--json")
        assert exc is None, out
        assert code == 0, out
        assert "Traceback" not in out, out
        assert "recipe.yaml unparsable" in out
    else:  # resume: the run folder's recipe.yaml is read to see whether it was edited
        run = copy_run(trained, tmp_path / "run")
        (run / "recipe.yaml").unlink()
        _yaml_file(run, case, "recipe.yaml")
        code, out, exc = run_cli("train", "--resume", run, "--device", "cpu")
        line = assert_clean_error(code, out, exc, "recipe.yaml", "no longer reads as a recipe")
    assert time.monotonic() - start < 30, "bounded: refused within seconds, not a hang"


SET_CASES = {
    "alias-bomb": ("model_args={" + _bomb(9, 9).replace("\n", ",").replace("  ", " ") + "}", "alias"),
    "deep-nesting": ("model_args.x=" + "[" * 5000 + "]" * 5000, "nested deeper"),
    "duplicate-key": ("optimizer={name: sgd, lr: 0.1, lr: 0.2}", "duplicate key"),
    "python-tag": ("model_args=!!python/object/apply:os.system ['true']", "python tags"),
    "deep-key-path": ("a." * 5000 + "b=1", "levels of keys"),
    "nan": ("optimizer.lr=.nan", "finite"),
    "inf-literal": ("optimizer.lr=1e400", "finite"),
    "bool-epochs": ("epochs=true", "not a boolean"),
}


@pytest.mark.parametrize("case", list(SET_CASES))
def test_set_values_are_bounded_like_files(case, run_cli, tmp_path):
    item, needle = SET_CASES[case]
    start = time.monotonic()
    for cmd in (["recipes", "s8_bn"], ["train", "s8_bn", "--runs-dir", tmp_path / "runs", "--device", "cpu"]):
        code, out, exc = run_cli(*cmd, "--set", item)
        assert_clean_error(code, out, exc, needle)
    assert not (tmp_path / "runs").exists()
    assert time.monotonic() - start < 10


def test_a_crafted_stored_recipe_is_bounded_too():
    """A checkpoint's recipe is no YAML but can be self-similar (a pickle memo): refused fast."""
    from cifarctl.recipe.load import validate_dict

    leaf: Any = [1] * 10
    for _ in range(9):
        leaf = [leaf] * 10  # 10**10 values once walked, a few hundred objects in memory
    start = time.monotonic()
    with pytest.raises(RecipeError, match="more than"):
        validate_dict({"name": "x", "model": "s8_bn", "epochs": 1, "model_args": {"x": leaf}}, "ckpt")
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(RecipeError, match="nested deeper"):
        validate_dict({"name": "x", "model": "s8_bn", "epochs": 1, "model_args": {"x": deep}}, "ckpt")
    assert time.monotonic() - start < 2


# ------------------------------------------------------------------------ schema, by property
FILL = {"max_lr": 0.1, "step_size": 1, "milestones": [1], "acc": 50.0, "source": "x"}  # required fields of sections


def _members(annotation) -> list:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _members(a)]
    return [annotation]


def _section(cls) -> dict:
    """The smallest valid mapping for a schema section (its tag and required fields)."""
    out = {}
    for name, field in cls.model_fields.items():
        if name == "name" and get_origin(field.annotation) is not None:
            out["name"] = get_args(field.annotation)[0]
        elif field.is_required():
            out[name] = FILL[name]
    return out


def _number_fields(cls=None, path=(), base=None):
    """(path, section mappings on the way, kind, default) for every int/float field of the
    schema, through every member of every union (optimizer: sgd, adam, adamw...)."""
    from cifarctl.recipe.schema import Recipe

    cls = cls or Recipe
    for name, field in cls.model_fields.items():
        members = _members(field.annotation)
        for m in members:
            if isinstance(m, type) and issubclass(m, BaseModel):
                yield from _number_fields(m, (*path, (name, _section(m))))
        scalars = [m for m in members if m in (int, float)]
        if scalars and name != "schema_version":
            yield (*path, (name, None)), "float" if float in scalars else "int", field.default
        for m in members:
            if get_origin(m) is tuple and any(float in _members(a) for a in get_args(m)):
                sample = field.default if field.default is not None else \
                    tuple(1.0 + i for i in range(len(get_args(m))))  # an optional pair: a valid one
                yield (*path, (name, None)), "float-tuple", sample
            elif get_origin(m) is list and int in _members(get_args(m)[0]):
                yield (*path, (name, None)), "int-list", [1]


def _with(path, value) -> dict:
    raw: dict = {"name": "x", "model": "s8_bn", "epochs": 1}
    node = raw
    for key, section in path[:-1]:
        node = node.setdefault(key, dict(section))
    node[path[-1][0]] = value
    return raw


NUMBER_FIELDS = list(_number_fields())
# One field of each kind: they share one rule (cifarctl.recipe's strict base config, checked
# for every section by test_every_schema_section_refuses_inf_nan_and_booleans).
NUMBER_KINDS = list({kind: case for case in NUMBER_FIELDS for kind in [case[1]]}.values())


def _id(case) -> str:
    return ".".join(k if not s or "name" not in s else f"{k}[{s['name']}]" for k, s in case[0])


def test_every_schema_section_refuses_inf_nan_and_booleans():
    """Every section class is a StrictModel (no inf/nan, no booleans as numbers): the
    cases below exercise that rule once per kind of field."""
    from cifarctl.recipe.schema import Recipe
    from cifarctl.strict import StrictModel

    def sections(cls):
        yield cls
        for field in cls.model_fields.values():
            for m in _members(field.annotation):
                if isinstance(m, type) and issubclass(m, BaseModel):
                    yield from sections(m)

    found = set(sections(Recipe))
    assert len(NUMBER_FIELDS) > 40
    assert len(found) > 10  # the walk found the schema
    loose = [c.__name__ for c in found if not issubclass(c, StrictModel) or c.model_config.get("allow_inf_nan", True)]
    assert not loose, loose


@pytest.mark.parametrize("case", NUMBER_KINDS, ids=[_id(c) for c in NUMBER_KINDS])
def test_a_number_field_of_each_kind_is_finite_and_not_a_boolean(case):
    from cifarctl.recipe.load import validate_dict

    path, kind, default = case
    key = path[-1][0]
    assert {c[1] for c in NUMBER_KINDS} == {"float", "int", "float-tuple", "int-list"}
    if kind == "float-tuple":
        values = [[float("nan"), *list(default)[1:]], [*list(default)[:-1], float("inf")], [True, *list(default)[1:]]]
    elif kind == "int-list":
        values = [[True], [1, False]]
    elif kind == "float":
        values = [float("nan"), float("inf"), float("-inf"), "1e400", True, False]
    else:
        values = [True, False]
    for value in values:
        with pytest.raises(RecipeError) as e:
            validate_dict(_with(path, value), "recipe.yaml")
        text = str(e.value)
        assert f"{key}" in text, (value, text)
        assert "finite" in text or "boolean" in text, (value, text)


def _model_float_args():
    from cifarctl.registry import _args_model, list_models

    for model in list_models():
        args_model, _ = _args_model(model)
        for name, field in args_model.model_fields.items():
            if float in _members(field.annotation):
                yield model, name


@pytest.mark.parametrize("model,arg", list(_model_float_args()))
def test_every_float_model_arg_is_finite_and_in_range(model, arg):
    from cifarctl.recipe.load import validate_dict
    from cifarctl.registry import create_model

    for value in (float("nan"), float("inf"), True, 1.5, -0.1):
        with pytest.raises(RecipeError, match=f"model_args.{arg}"):
            validate_dict({"name": "x", "model": model, "epochs": 1, "model_args": {arg: value}}, "r.yaml")
    with pytest.raises(UsageError, match=f"model_args.{arg}"):  # as an old checkpoint would carry them
        create_model(model, **{arg: 1.5})


@pytest.mark.parametrize("sets,needle", [
    (["model_args.dropot=0.1"], "did you mean 'dropout'"),
    (["model_args.dropout=1.0"], "model_args.dropout: Input should be less than 1"),
    (["model_args.widths=[1, 2, 3]"], "model_args.widths"),
    (["data.augment=[{RandomCrop: {height: 40, width: 40}}]"], "data.augment[0].RandomCrop: cannot be applied"),
    (["data.augment=[{PadIfNeeded: {min_height: 40, min_width: 40}}]"], "must always end at 32x32"),
    (["data.augment=[{PadIfNeeded: {min_height: 40, min_width: 40, p: 0.5}}]"], "32x32 or 40x40"),
    (["scheduler={name: onecycle, max_lr: 0.1, lr_find: {start_lr: 1.0, end_lr: 0.1}}"],
     "scheduler.lr_find: start_lr (1) must be smaller than end_lr (0.1)"),
    (["scheduler={name: onecycle, max_lr: auto, lr_find: {end_lr: .inf}}"], "scheduler.lr_find.end_lr"),
], ids=["model_args-name", "dropout-range", "widths-length", "crop-40", "ends-at-40", "sometimes-40",
        "lr_find-order", "lr_find-inf"])
def test_model_args_geometry_and_lr_find_are_checked_with_the_recipe(sets, needle, run_cli, tmp_path):
    args = [a for s in sets for a in ("--set", s)]
    code, out, exc = run_cli("train", "s8_bn", *FAST, *args, "--runs-dir", tmp_path / "runs")
    line = assert_clean_error(code, out, exc, needle)
    assert "s8_bn.yaml" in line
    assert not (tmp_path / "runs").exists()  # before any run folder
    from cifarctl.recipe.load import load_recipe

    load_recipe("s8_bn", ["data.augment=[{PadIfNeeded: {min_height: 40, min_width: 40, p: 0.5}}, "
                          "{RandomCrop: {height: 32, width: 32}}]"])  # a later crop fixes the size


# ------------------------------------------------------------------------ 3. data
def _png(rng) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _image_folder(root: Path, classes=CLASSES, n: int = 1) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (root / split / c / f"{i}.png").write_bytes(_png(rng))
    return root


def _batches(folder: Path, labels=None, names=CLASSES) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    from cifarctl.data import readers

    for name in readers.BATCH_NAMES:
        y = labels if labels is not None else [int(v) for v in rng.integers(0, 10, 2)]
        batch = {b"labels": y, b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in names]}, protocol=2))
    return folder


def _data_case(tmp_path: Path, case: str) -> tuple[Any, str]:
    """(source, needle) for a broken data source."""
    d = tmp_path / "d"
    if case == "one-class":  # any number of classes is data, but a classifier needs two
        _image_folder(d, ("zebra",))
        return d, "only one class folder"
    if case == "test-lacks-a-class":
        _image_folder(d, CLASSES)
        shutil.rmtree(d / "test" / "truck")
        return d, "truck in train/ but not in test/"
    if case == "one-class-archive":
        _image_folder(tmp_path / "src", ("a",))
        with tarfile.open(d.with_suffix(".tar.gz"), "w:gz") as tf:
            tf.add(tmp_path / "src", arcname="")
        return d.with_suffix(".tar.gz"), "at least two"
    if case == "pickle-label-names":
        return _batches(d, names=[*CLASSES[:9], "zebra"]), "extra: 'zebra'"
    if case in ("labels-strings", "labels-floats", "labels-none", "labels-bools"):
        labels = {"labels-strings": ["cat", "dog"], "labels-floats": [0.5, 1.0], "labels-none": None,
                  "labels-bools": [True, False]}[case]
        return _batches(d, labels=labels if labels is not None else 7), "'labels'"
    if case == "labels-out-of-range":
        return _batches(d, labels=[3, 12]), "label 12 out of range"
    if case == "dangling-link":
        _image_folder(d)
        os.symlink(tmp_path / "nowhere.png", d / "train" / "cat" / "x.png")
        return d, "dangling symbolic link"
    if case == "link-loop":
        _image_folder(d)
        os.symlink(d / "train" / "cat" / "loop.png", d / "train" / "cat" / "loop.png")
        return d, "symbolic link loop"
    if case == "class-folder-link-loop":
        _image_folder(d)
        os.symlink(d / "train" / "zz", d / "train" / "zz")
        return d, "symbolic link loop"
    if case == "gzip-bit-flip":
        _image_folder(tmp_path / "src", n=3)
        archive = tmp_path / "d.tar.gz"
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(tmp_path / "src", arcname="")
        blob = bytearray(archive.read_bytes())
        blob[-6] ^= 0x01  # the CRC-32 in the gzip trailer: every member still reads "fine"
        archive.write_bytes(bytes(blob))
        return archive, "checksum"
    if case == "xz-bit-flip":
        _image_folder(tmp_path / "src", n=3)
        archive = tmp_path / "d.tar.xz"
        with tarfile.open(archive, "w:xz") as tf:
            tf.add(tmp_path / "src", arcname="")
        blob = bytearray(archive.read_bytes())
        blob[len(blob) // 2] ^= 0x10
        archive.write_bytes(bytes(blob))
        return archive, "corrupt"
    if case == "synthetic-huge":
        return "synthetic:10000000000", "at most 200,000"
    if case == "synthetic-zero":
        return "synthetic:0", "bad synthetic source"
    raise AssertionError(case)


DATA_CASES = ["one-class", "test-lacks-a-class", "one-class-archive", "pickle-label-names", "labels-strings",
              "labels-floats", "labels-none", "labels-bools", "labels-out-of-range", "dangling-link", "link-loop",
              "class-folder-link-loop", "gzip-bit-flip", "xz-bit-flip", "synthetic-huge", "synthetic-zero"]


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_one_line(case, tmp_path, run_cli, monkeypatch):
    from cifarctl.data import load_cifar

    cache = tmp_path / "cache"
    monkeypatch.setenv("CIFARCTL_DATA_DIR", str(cache))
    source, needle = _data_case(tmp_path, case)
    with pytest.raises(DataError, match=needle.replace("(", r"\(").replace("'", "'")) as e:
        load_cifar(source, cache_dir=cache, progress=False)
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2
    assert not list(cache.rglob("*.npz")), "never cached"
    code, out, exc = run_cli("data", source)
    assert_clean_error(code, out, exc, needle)
    if case in ("one-class", "gzip-bit-flip", "dangling-link"):  # train: before any run folder
        runs = tmp_path / "runs"
        code, out, exc = run_cli("train", "s8_bn", "--data", source, "--set", "epochs=1", "--device", "cpu",
                                 "--runs-dir", runs)
        assert_clean_error(code, out, exc, needle)
        assert not runs.exists() or not any(runs.iterdir())


def test_gzip_archive_read_to_the_end_good_one_loads(tmp_path):
    from cifarctl.data import load_cifar

    _image_folder(tmp_path / "src", n=2)
    archive = tmp_path / "ok.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "src", arcname="")
    data = load_cifar(archive, cache_dir=tmp_path / "cache", progress=False)
    assert data.classes == list(CLASSES)
    assert len(data.train_y) == 20
    assert gzip.decompress(archive.read_bytes())  # the archive itself is fine


CACHE_DAMAGE = {
    "labels-out-of-range": lambda a: a.update(train_y=a["train_y"] + 10),
    "fewer-labels": lambda a: a.update(test_y=a["test_y"][:-1]),
    "float-labels": lambda a: a.update(train_y=a["train_y"].astype(np.float32)),
    "wrong-dtype": lambda a: a.update(test_x=a["test_x"].astype(np.int16)),
    "wrong-shape": lambda a: a.update(test_x=a["test_x"][:, :16]),
    "one-class": lambda a: a.update(classes=np.array(["zebra"])),  # any number of classes but one
    "empty-test": lambda a: a.update(test_x=a["test_x"][:0], test_y=a["test_y"][:0]),
}


@pytest.mark.parametrize("case", list(CACHE_DAMAGE))
def test_cached_arrays_are_validated_as_a_whole_and_redecoded(case, tmp_path, caplog):
    import logging

    from cifarctl.data import cache as cache_mod
    from cifarctl.data import load_cifar

    src = _image_folder(tmp_path / "src", n=2)
    first = load_cifar(src, cache_dir=tmp_path / "cache", progress=False)
    (cfile,) = (tmp_path / "cache" / "decoded").glob("*.npz")
    with np.load(cfile, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    CACHE_DAMAGE[case](arrays)
    with open(cfile, "wb") as f:
        np.savez(f, **arrays)
    with caplog.at_level(logging.WARNING, logger="cifarctl.data"):
        again = load_cifar(src, cache_dir=tmp_path / "cache", progress=False)
    assert not again.cached, "inconsistent cache: decoded again"
    assert any("inconsistent" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(again.train_y, first.train_y)
    assert cache_mod.problems({"train_x": again.train_x, "train_y": again.train_y, "test_x": again.test_x,
                               "test_y": again.test_y}, again.classes) is None
    assert load_cifar(src, cache_dir=tmp_path / "cache", progress=False).cached  # rebuilt


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_signal_during_the_first_decode_leaves_no_worker(tmp_path, sig, monkeypatch):
    """The first decode of an archive uses a fork pool: killing the command must take its
    workers with it (they held ~340 MB each)."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for split, n in (("train", 300), ("test", 40)):  # 3,400 images: the pool starts at the first 1,000
        for c in CLASSES:
            (src / split / c).mkdir(parents=True)
            for i in range(n):
                (src / split / c / f"{i}.png").write_bytes(_png(rng))
    archive = tmp_path / "d.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(src, arcname="")
    env = dict(os.environ, CIFARCTL_DATA_DIR=str(tmp_path / "cache"), NO_ALBUMENTATIONS_UPDATE="1")
    # every decode task sleeps a minute (whatever its arguments): the workers are busy, alive,
    # when the signal comes, however slow the machine
    code = ("import sys, time; from cifarctl.data import readers; real = readers.decode_chunk\n"
            "def slow(*args, **kwargs):\n    time.sleep(60); return real(*args, **kwargs)\n"
            "readers.decode_chunk = slow\n"
            "from cifarctl.data import load_cifar; load_cifar(sys.argv[1], progress=False)\n")
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as err_file:
        proc = subprocess.Popen([sys.executable, "-c", code, str(archive)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err_file)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
            time.sleep(0.2)
            workers = _children(proc.pid)
        assert proc.poll() is None, f"the decode ended before the signal: {err.read_text()[-2000:]}"
        assert workers, "no decode workers started"
        time.sleep(1.0)
        workers = _children(proc.pid)
        assert len(workers) >= 2, f"the decode workers ended before the signal: {workers}"
        assert all(_alive(w) for w in workers)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)], "orphaned decode workers"
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in {*workers, *_children(proc.pid)}:  # never leave an orphan behind, even on failure
            if _alive(w):
                try:
                    os.kill(w, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# ------------------------------------------------------------------------ 4. resume
def _ckpt_edit(path: Path, **changes) -> None:
    import torch

    ckpt = torch.load(path, weights_only=True)
    ckpt.update(changes)
    torch.save(ckpt, path)


RESUME_CASES = ["checkpoint-of-another-run", "checkpoint-without-run-id", "folder-without-run-json",
                "other-data", "other-data-same-name", "edited-recipe-yaml", "second-writer"]


@pytest.mark.parametrize("case", RESUME_CASES)
def test_resume_belongs_to_its_run(case, tmp_path, trained, run_cli, monkeypatch):
    """Every refusal is exit 2 and one line before anything is written; --force lets the
    run-id and data cases through with a warning."""
    import torch

    run = copy_run(trained, tmp_path / "run")
    last = run / "checkpoints" / "last.pt"
    extra: list = []
    needle, forceable = "", True
    if case == "checkpoint-of-another-run":
        other = copy_run(trained, tmp_path / "other")
        (other / "run.json").write_text(json.dumps({"run_id": "f" * 32}))
        _ckpt_edit(other / "checkpoints" / "last.pt", run_id="f" * 32)
        shutil.copy(other / "checkpoints" / "last.pt", last)
        needle = "belongs to another run"
    elif case == "checkpoint-without-run-id":
        ckpt = torch.load(last, weights_only=True)
        del ckpt["run_id"]
        torch.save(ckpt, last)
        needle = "carries no run id"
    elif case == "folder-without-run-json":
        (run / "run.json").unlink()
        needle = "has no run.json"
    elif case == "other-data":
        extra = ["--data", "synthetic:96:20"]
        needle = "was trained on"
    elif case == "other-data-same-name":  # the same path, another content
        d = _image_folder(tmp_path / "data", n=7)  # 70 images: as many full batches as the run's
        _ckpt_edit(last, data_key="0" * 64, data_source=str(d))
        extra = ["--data", d]
        needle = "another content"
    elif case == "edited-recipe-yaml":
        text = (run / "recipe.yaml").read_text().replace("seed: 1", "seed: 5")
        assert "seed: 5" in text
        (run / "recipe.yaml").write_text(text)
        needle = "recipe.yaml was edited after its checkpoint was saved (seed: 1 -> 5)"
    elif case == "second-writer":
        from cifarctl.runs import RunLock

        holder = RunLock(run)  # this process is "the first writer"
        needle, forceable = f"pid {os.getpid()} is writing it", False
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    code, out, exc = run_cli("train", "--resume", run, "--device", "cpu", *extra)
    assert_clean_error(code, out, exc, needle)
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before, "a refused resume writes nothing"
    if case == "second-writer":
        code, out, exc = run_cli("train", "--resume", run, "--device", "cpu", "--force")
        assert_clean_error(code, out, exc, needle)  # --force does not make two writers safe
        holder.close()
    elif forceable:  # --force goes on, and says what it let through
        code, out, exc = run_cli("train", "--resume", run, "--device", "cpu", *extra, "--force")
        assert exc is None, out
        assert code == 0, out
        assert "warning: --force" in out
        rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2]
        if case == "edited-recipe-yaml":  # the edit was ignored (and said so): the file is the run's again
            assert "seed: 1\n" in (run / "recipe.yaml").read_text()


def test_checkpoints_carry_the_run_id_and_data_key(trained):
    import torch

    from cifarctl.runs import read_run_info

    info = read_run_info(trained)
    assert len(info["run_id"]) == 32
    assert info["data_key"] == "synthetic:64:20"
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(trained / "checkpoints" / name, weights_only=True)
        assert ckpt["run_id"] == info["run_id"]
        assert ckpt["data_key"] == info["data_key"]


def test_the_lock_is_released_and_held_by_pid(tmp_path):
    from cifarctl.runs import RunLock

    (tmp_path / "run").mkdir()
    with RunLock(tmp_path / "run"):
        assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(UsageError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path / "run")
    with RunLock(tmp_path / "run"):  # released on exit
        pass
    # a forked worker (DataLoader, decode pool) does not keep its parent's lock: after a
    # kill -9 of the trainer its orphaned workers must not lock the resume out
    import multiprocessing

    lock = RunLock(tmp_path / "run")
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(5,))
    child.start()
    try:
        lock_path = str(tmp_path / "run" / ".lock")
        deadline = time.time() + 10  # until the child has run its at-fork hooks
        while time.time() < deadline and any(os.path.realpath(f"/proc/{child.pid}/fd/{fd}") == lock_path
                                             for fd in os.listdir(f"/proc/{child.pid}/fd")):
            time.sleep(0.05)
        lock.close()
        RunLock(tmp_path / "run").close()
    finally:
        child.terminate()
        child.join()


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143)], ids=["SIGTERM"])  # SIGINT: the same path, exit 130
def test_a_second_signal_during_a_slow_save_keeps_the_checkpoint_and_says_which(tmp_path, sig, code):
    """First signal: stop after the step and save last.pt (slowed to 4 s); a second one while
    it is being written: the file is finished first, then the command exits with the code
    of that signal. No temp file is left, last.pt loads and holds the mid-epoch state."""
    import torch

    from cifarctl.checkpoints import load_checkpoint

    env = dict(os.environ, CIFARCTL_TEST_SLOW_SAVE="4", NO_ALBUMENTATIONS_UPDATE="1", PYTHONUNBUFFERED="1")
    log = tmp_path / "out.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen([*CLI, "train", "s8_bn", "--set", "data.source=synthetic:960:32",
                                 "--set", "data.batch_size=32", "--set", "epochs=1", "--set",
                                 "data.test_batch_size=32", "--device", "cpu", "--runs-dir", str(tmp_path / "runs")],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and "training s8_bn" not in log.read_text():
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(sig)
        run = None
        while time.time() < deadline:  # wait for the save's temp file
            runs = list((tmp_path / "runs").iterdir())
            run = runs[0] if runs else None
            if run and list((run / "checkpoints").glob(".last.pt.tmp-*")):
                break
            time.sleep(0.05)
        assert run, log.read_text()
        assert proc.poll() is None, log.read_text()
        proc.send_signal(sig)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == code, text
    assert "Traceback" not in text
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["progress"] is not None
    assert ckpt["step"] >= 1  # the mid-epoch state, complete
    assert not list(run.rglob(".*.tmp-*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert "after finishing the checkpoint" in summary["error"]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["run_id"]


# ------------------------------------------------------------------------ no traceback without --debug
def _corpus(tmp_path: Path, trained: Path) -> list[tuple[str, list]]:
    """(case, argv) over broken inputs for every command."""
    cases: list[tuple[str, list]] = []
    runs = tmp_path / "runs"
    for case in ("alias-bomb-under-model_args", "deep-nesting-5000", "duplicate-key", "binary", "latin-1",
                 "directory", "dev-null", "recursive-alias"):
        path = _yaml_file(tmp_path / case, case)
        for cmd in (["recipes"], ["train"], ["lr-find"], ["summary"]):
            cases.append((f"{cmd[0]}-{case}", [*cmd, path, *(["--runs-dir", runs] if cmd[0] in ("train", "lr-find")
                                                            else [])]))
    for item in ("epochs=true", "optimizer.lr=.nan", "name=../../x", "name=" + "y" * 300,
                 "model_args.dropout=1.5", "data.augment=[{RandomCrop: {height: 40, width: 40}}]",
                 "data.normalize.std=[0, 1, 1]", "data.source=synthetic:99999999999"):
        cases.append((f"train-set-{item[:20]}", ["train", "s8_bn", *FAST, "--set", item, "--runs-dir", runs]))
    cases.append(("train-name-too-long", ["train", "s8_bn", *FAST, "--name", "z" * 300, "--runs-dir", runs]))
    cases.append(("train-runs-dir-is-a-file", ["train", "s8_bn", *FAST, "--runs-dir", "/dev/null"]))
    for case in ("one-class", "labels-strings", "link-loop", "gzip-bit-flip"):
        source, _ = _data_case(tmp_path / f"data-{case}", case)
        cases.append((f"data-{case}", ["data", source]))
        cases.append((f"train-data-{case}", ["train", "s8_bn", "--data", source, "--set", "epochs=1",
                                             "--device", "cpu", "--runs-dir", runs]))
    # run folders: a recipe.yaml bomb for compare; a checkpoint with bad model_args for eval/misclassified
    bomb = copy_run(trained, tmp_path / "bomb-run")
    (bomb / "recipe.yaml").write_text(YAML_CASES["alias-bomb-under-model_args"][0])
    cases.append(("compare-bomb", ["compare", bomb, trained, "--json"]))
    cases.append(("resume-bomb", ["train", "--resume", bomb, "--device", "cpu"]))
    bad = copy_run(trained, tmp_path / "bad-args-run")
    for name in ("last.pt", "best.pt"):
        _ckpt_edit(bad / "checkpoints" / name, model_args={"dropout": 1.5})
    cases.append(("eval-bad-model_args", ["eval", bad, "--device", "cpu"]))
    cases.append(("misclassified-bad-model_args", ["misclassified", bad, "--device", "cpu",
                                                   "--out", tmp_path / "m.png"]))
    nan = copy_run(trained, tmp_path / "nan-run")
    for name in ("last.pt", "best.pt"):
        import torch

        ckpt = torch.load(nan / "checkpoints" / name, weights_only=True)
        ckpt["recipe"]["optimizer"]["lr"] = float("nan")
        torch.save(ckpt, nan / "checkpoints" / name)
    cases.append(("eval-nan-stored-recipe", ["eval", nan, "--device", "cpu"]))
    cases.append(("resume-nan-stored-recipe", ["train", "--resume", nan, "--device", "cpu"]))
    return cases


def test_no_traceback_without_debug_over_a_corpus_of_broken_inputs(tmp_path, trained, run_cli):
    failures = []
    corpus = _corpus(tmp_path, trained)
    for case, argv in corpus:
        code, out, exc = run_cli(*argv)
        if argv[0] == "compare":  # a bad run folder is marked, the rest compared: exit 0
            if exc is not None or "Traceback" in out or code != 0 or "unparsable" not in out:
                failures.append(f"{case}: exit {code}, {type(exc).__name__ if exc else ''} {out[-400:]}")
            continue
        if exc is not None or "Traceback" in out or code not in EXIT_CODES or "error:" not in out:
            failures.append(f"{case}: exit {code}, {type(exc).__name__ if exc else ''} {out[-400:]}")
    assert not failures, "\n".join(failures)
    assert len(corpus) > 50
    assert not (tmp_path / "x").exists()
    assert not (tmp_path.parent / "x").exists()


@pytest.mark.slow
def test_no_traceback_in_a_real_process(tmp_path, trained):
    """The same guarantee through the real entry point (stderr of a child process), for a
    few cases of each kind."""
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    bomb = _yaml_file(tmp_path, "alias-bomb-under-model_args")
    source, _ = _data_case(tmp_path / "data", "one-class")
    for argv in (["recipes", bomb], ["train", "s8_bn", "--set", "epochs=true"], ["data", source],
                 ["train", "s8_bn", "--set", "name=a/b"]):
        proc = subprocess.run([*CLI, *map(str, argv)], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode in EXIT_CODES, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr, (argv, proc.stderr)
        assert proc.stderr.strip().startswith("error:"), proc.stderr


# ------------------------------------------------------------------------ 5. every write site
@contextlib.contextmanager
def _failing_writes(folder: Path, err: int, only: str | None = None):
    """Every attempt to create, write or rename something under ``folder`` (whose name is
    ``only``, when given) fails with ``err``, as on a read-only or full file system: root
    ignores the permission bits of a chmod-ed folder, so the calls are replaced instead
    (``os.open``/``open``/``io.open`` for writing, ``mkdir``, ``os.replace``/``rename``).
    Reads go through."""
    import builtins
    import io as io_mod

    folder = os.path.abspath(folder)
    real = {"open": os.open, "mkdir": os.mkdir, "replace": os.replace, "rename": os.rename,
            "bopen": builtins.open}
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hit(path) -> bool:
        if isinstance(path, int):
            return False
        p = os.path.abspath(os.fspath(path))
        under = p == folder or p.startswith(folder + os.sep)
        return under and (only is None or os.path.basename(p).startswith((only, f".{only}.tmp-")))

    def fail(path):
        raise OSError(err, os.strerror(err), os.fspath(path))

    def os_open(path, flags, *a, **k):
        if flags & writes and hit(path):
            fail(path)
        return real["open"](path, flags, *a, **k)

    def b_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and hit(file):
            fail(file)
        return real["bopen"](file, mode, *a, **k)

    def mkdir(path, *a, **k):
        if hit(path):
            fail(path)
        return real["mkdir"](path, *a, **k)

    def move(name):
        def moved(src, dst, *a, **k):
            if hit(dst) or hit(src):
                fail(dst)
            return real[name](src, dst, *a, **k)
        return moved

    mp = pytest.MonkeyPatch()
    mp.setattr(os, "open", os_open)
    mp.setattr(os, "mkdir", mkdir)
    mp.setattr(os, "replace", move("replace"))
    mp.setattr(os, "rename", move("rename"))
    mp.setattr(builtins, "open", b_open)
    mp.setattr(io_mod, "open", b_open)
    try:
        yield
    finally:
        mp.undo()


def _no_temps(folder: Path) -> None:
    left = [p for p in Path(folder).rglob(".*.tmp-*")] if Path(folder).is_dir() else []
    assert not left, f"temp files left behind: {left}"


# (site, how it fails) -> exit code; every case: one line naming the file and the reason
WRITE_CASES = {
    # eval prints its result and warns (exit 0): the numbers are the answer, eval.json a copy
    "eval.json-read-only": 0, "eval.json-full": 0, "eval.json-read-only-previous": 0,
    "misclassified.png-read-only": 1, "misclassified-out-read-only": 1, "misclassified-out-is-a-folder": 2,
    "misclassified-out-under-a-file": 2, "compare-out-read-only": 1, "compare-out-is-a-folder": 2,
    "compare-out-under-a-file": 2, "lr_find.json-full": 1, "lr_find.png-read-only": 1,
}


@pytest.mark.parametrize("case", list(WRITE_CASES))
def test_every_write_site_is_one_line(case, tmp_path, trained, run_cli, monkeypatch):
    """Every file a command writes goes through one helper: a read-only folder, a full disk,
    a folder or a file in the way of the path is one ``error:`` line naming the file and the
    reason (exit 1; 2 for a bad path given with --out), no traceback, no temp file left, and
    'the previous X is intact' only where there was one."""
    import errno

    run = copy_run(trained, tmp_path / "run")
    site, _, how = case.partition("-")
    err = errno.ENOSPC if how.endswith("full") else errno.EROFS
    reason = os.strerror(err)
    fail_in, only, target = run, None, None
    if case.startswith("eval.json"):
        target, only = run / "eval.json", "eval.json"
        if case.endswith("previous"):
            target.write_text('{"accuracy": 1.0}\n')
        argv = ["eval", run, "--device", "cpu"]
    elif case.startswith("misclassified"):
        argv = ["misclassified", run, "--device", "cpu", "--n", "4"]
        if case == "misclassified.png-read-only":
            target = run / "misclassified.png"
        else:
            out_dir = tmp_path / "out"
            out_dir.mkdir()
            fail_in, target = out_dir, out_dir / "m.png"
            if case.endswith("is-a-folder"):
                target.mkdir()
                fail_in, reason = None, "Is a directory"
            elif case.endswith("under-a-file"):
                (out_dir / "file").write_text("x")
                target, fail_in, reason = out_dir / "file" / "m.png", None, "Not a directory"
            argv += ["--out", target]
    elif case.startswith("compare"):
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        fail_in, target = out_dir, out_dir / "t.csv"
        if case.endswith("is-a-folder"):
            target = out_dir / "t.csv"
            target.mkdir()
            fail_in, reason = None, "Is a directory"
        elif case.endswith("under-a-file"):
            (out_dir / "file").write_text("x")
            target, fail_in, reason = out_dir / "file" / "t.csv", None, "Not a directory"
        argv = ["compare", run, "--out", target]
    else:  # lr-find: the folder is made, then a file in it cannot be written
        only = site
        fail_in = tmp_path / "runs"
        argv = ["lr-find", "s8_bn", *FAST[:4], "--num-iter", "5", "--runs-dir", fail_in, "--device", "cpu"]
    before = target.read_bytes() if target is not None and target.is_file() else None
    with (_failing_writes(fail_in, err, only) if fail_in is not None else contextlib.nullcontext()):
        code, out, exc = run_cli(*argv)
    if case.startswith("eval.json"):
        assert exc is None, out
        assert code == 0, out
        assert "Traceback" not in out, out
        warned = [ln for ln in out.splitlines() if ln.startswith("warning: cannot write")]
        assert len(warned) == 1, out
        assert reason in warned[0], out
        assert "accuracy" in out, out
        line = warned[0]
    else:
        line = assert_clean_error(code, out, exc, reason, expect=WRITE_CASES[case])
    if target is not None:
        assert f"cannot write {target} " in line, line
    else:
        assert f"/{only} " in line, line
    assert ("is intact" in line) == case.endswith("previous"), line
    if before is not None:
        assert target.read_bytes() == before
    if how.endswith("full"):
        assert "disk is full" in line
    if case == "misclassified.png-read-only":
        assert "--out" in line  # where else it can go
    if case.startswith("eval.json"):
        assert "was not saved" in line
        assert "%" in line  # the result is in the line, not lost
    for folder in (run, tmp_path / "out", tmp_path / "runs"):
        _no_temps(folder)


@pytest.mark.parametrize("site", ["curves.png", "summary.json", "recipe.yaml", "last.pt", "metrics.jsonl"])
def test_run_folder_writes_are_one_line(site, tmp_path, trained):
    """The files of a run folder that ``train`` writes, on a read-only folder: a WriteError
    (exit 1) naming the file, one line, the previous file kept and said to be only if it was there."""
    import errno

    from cifarctl import runs
    from cifarctl.errors import WriteError

    run = copy_run(trained, tmp_path / "run")
    files = runs.RunFiles(run)
    from cifarctl.training.curves import write_curves

    target = run / ("checkpoints/last.pt" if site == "last.pt" else site)
    before = target.read_bytes() if target.is_file() else None
    write = {
        "curves.png": lambda: write_curves(target, [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.0,
                                                     "train_acc": 50.0, "test_acc": 50.0, "lr": 0.1}]),
        "summary.json": lambda: files.summary({"status": "running"}),
        "recipe.yaml": lambda: runs.write_atomic(target, "name: x\n"),
        "last.pt": lambda: files.save_checkpoint({"x": 1}, files.last),
        "metrics.jsonl": lambda: files.metrics({"epoch": 9}),
    }[site]
    with _failing_writes(run, errno.EROFS), pytest.raises(WriteError) as e:
        write()
    text = str(e.value)
    assert "\n" not in text
    assert e.value.exit_code == 1
    assert f"cannot write {target} (Read-only file system" in text
    assert ("is intact" in text) == (before is not None and site != "metrics.jsonl"), text
    assert (target.read_bytes() if target.is_file() else None) == before
    _no_temps(run)


def _write_calls(tree: ast.AST):
    """(line, what) of every call in ``tree`` that creates or writes a file or a folder, with
    whether it sits in a ``try`` that handles ``OSError``."""
    handled: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            names = {ast.unparse(h.type) if h.type is not None else "BaseException" for h in node.handlers}
            if any(n in ("Exception", "BaseException") or "OSError" in n for n in names):
                for inner in node.body:
                    handled.update(id(n) for n in ast.walk(inner))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        text = ast.unparse(f)
        # torch.save(obj, file), and torch.jit.save / torch.export.save likewise
        dest = node.args[1:2] if text in ("torch.save", "torch.jit.save", "torch.export.save") else node.args[:1]
        first = ast.unparse(dest[0]) if dest else ""
        mode = next((a.value for a in node.args[1:2] if isinstance(a, ast.Constant)), None) or \
            next((k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)), "")
        what = None
        if name in ("write_text", "write_bytes"):
            what = f"{text}(): write through cifarctl.fsutil.write_atomic"
        elif (name == "savefig" or isinstance(f, ast.Attribute) and name in ("save", "savez")) \
                and first not in ("buf", "f"):
            what = f"{text}({first}, ...): into a buffer, then write_atomic"
        elif name == "open" and text in ("open", "io.open") and isinstance(mode, str) and set(mode) & set("wax+"):
            what = f"open(..., {mode!r})"
        elif text == "os.open" and any(flag in ast.unparse(node) for flag in ("O_CREAT", "O_WRONLY", "O_RDWR")):
            what = "os.open for writing"
        elif name in ("mkdir", "makedirs", "mkstemp", "mkdtemp", "fdopen") or \
                text in ("os.replace", "os.rename", "shutil.move", "shutil.copy", "shutil.copyfile"):
            what = f"{text}()"
        if what:
            yield node.lineno, what, id(node) in handled


# Writes outside cifarctl/fsutil.py that are not through write_atomic, with why that is right.
WRITE_ALLOWED = {
    ("cli/launch.py", "Path(path).write_text()"): "best effort: rank 0's exit code for the launcher",
    ("runs.py", "open(..., 'a')"): "metrics.jsonl and log.txt are appended line by line (fsynced), errors named",
    ("data/cache.py", "os.fdopen()"): "the cache writes through mkstemp; a failure is a warning, not an error",
    ("data/sources.py", "cache.save(cfile, ...)"): "cifarctl.data.cache.save: the cache's own atomic writer",
}


def test_every_write_goes_through_the_helper():
    """Read from the source: no file is written with ``write_text``/``savefig(path)``/
    ``open(..., 'w')`` outside :func:`cifarctl.fsutil.write_atomic`, and every folder made,
    file renamed or opened for writing elsewhere is inside a ``try`` that handles
    ``OSError`` (so it becomes one line), or is listed above with the reason."""
    package = Path(__file__).resolve().parents[1] / "cifarctl"
    bad = []
    for py in sorted(package.rglob("*.py")):
        rel = py.relative_to(package).as_posix()
        if rel == "fsutil.py":
            continue
        for line, what, handled in _write_calls(ast.parse(py.read_text())):
            if (rel, what.split(":")[0]) in WRITE_ALLOWED:
                continue
            if ":" in what:  # a direct write: never
                bad.append(f"cifarctl/{rel}:{line}: {what}")
            elif not handled:
                bad.append(f"cifarctl/{rel}:{line}: {what} outside a try that handles OSError")
    assert not bad, "\n".join(bad)
    # the scan finds what it looks for
    sample = ("Path('x').write_text('y')\nfig.savefig(png_path)\ntorch.save(obj, path)\nos.mkdir(p)\n"
              "torch.save(obj, buf)\ntry:\n    os.replace(a, b)\nexcept OSError:\n    pass\n")
    found = sorted((line, w.split("(")[0], handled) for line, w, handled in _write_calls(ast.parse(sample)))
    assert found == [(1, "Path", False), (2, "fig.savefig", False), (3, "torch.save", False), (4, "os.mkdir", False),
                     (7, "os.replace", True)]


# ------------------------------------------------------------------------ 6. compare reads any run folder
def _hand_run(root: Path, name: str, seed: int, accs=(50.0, 60.0), seconds: float = 10.0) -> Path:
    """A finished run folder as `train` writes it (recipe.yaml, metrics.jsonl, summary.json)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "recipe.yaml").write_text(f"name: s8_bn\nmodel: s8_bn\nepochs: {len(accs)}\nseed: {seed}\n")
    (d / "metrics.jsonl").write_text("".join(json.dumps(
        {"epoch": e, "test_acc": a, "train_acc": a, "test_loss": 1.0, "seconds": seconds, "images_per_s": 100.0}) + "\n"
        for e, a in enumerate(accs, 1)))
    (d / "summary.json").write_text(json.dumps({"status": "completed", "total_seconds": seconds * len(accs)}))
    return d


def _sparse(path: Path, size: int = 4 << 30, head: bytes = b"") -> None:
    """A file of ``size`` bytes that takes no disk: ``head``, then a hole of zeros."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


COMPARE_CASES: dict[str, tuple[str, str]] = {
    # case: (listed with a mark | skipped with a reason, needle)
    "values-1e308": ("listed", ""),
    "non-finite-values": ("listed", "non-finite test_acc"),
    "integer-past-float": ("listed", "non-finite test_acc"),
    "sparse-4gb-metrics": ("skipped", "metrics.jsonl is 4.0 GB"),
    "many-bad-lines": ("listed", "more bad metrics lines"),
    "deeply-nested-line": ("listed", "bad metrics line 1"),
    "symlink-loop": ("skipped", "a symbolic link loop"),
    "metrics-link-loop": ("skipped", "metrics.jsonl is a symbolic link loop"),
    "recipe-bomb": ("listed", "recipe.yaml unparsable"),
    "inf-in-recipe": ("listed", ""),
    "deep-summary": ("listed", "summary.json unparsable"),
    "sparse-4gb-summary": ("listed", "summary.json is 4.0 GB, over the 16.0 MB read"),
    "metrics-symlink": ("skipped", "metrics.jsonl is a symbolic link (not followed)"),
}


def _bad_folder(root: Path, case: str) -> Path:
    d = root / "bad"
    if case == "symlink-loop":
        os.symlink(d, d)
        return d
    _hand_run(root, "bad", 3, accs=(55.0, 65.0))
    m = d / "metrics.jsonl"
    good = m.read_bytes()
    if case == "values-1e308":  # a group mean, a sum of seconds, a mean speed: each overflows a float
        m.write_text("".join(json.dumps({"epoch": e, "test_acc": 1.7e308, "train_acc": 1e308, "seconds": 1.7e308,
                                         "images_per_s": 1.7e308}) + "\n" for e in (1, 2)))
        (d / "summary.json").write_text(json.dumps({"status": "completed", "total_seconds": 1.7e308}))
    elif case == "non-finite-values":
        m.write_text('{"epoch": 1, "test_acc": Infinity, "seconds": NaN}\n{"epoch": 2, "test_acc": 1e400}\n'
                     + good.decode().splitlines()[1] + "\n")
    elif case == "integer-past-float":
        m.write_text('{"epoch": 1, "test_acc": %s}\n' % ("9" * 400) + good.decode())
    elif case == "sparse-4gb-metrics":
        _sparse(m)
    elif case == "metrics-symlink":
        (d / "elsewhere.jsonl").write_bytes(good)
        m.unlink()
        os.symlink("elsewhere.jsonl", m)
    elif case == "many-bad-lines":
        m.write_bytes(good + b"not json\n" * 50_000)
    elif case == "deeply-nested-line":
        m.write_bytes(b"[" * 30_000 + b"]" * 30_000 + b"\n" + good)
    elif case == "metrics-link-loop":
        m.unlink()
        os.symlink(m, m)
    elif case == "recipe-bomb":
        (d / "recipe.yaml").write_text(YAML_CASES["alias-bomb-under-model_args"][0])
    elif case == "inf-in-recipe":  # a setting that labels the group: null in JSON, never Infinity
        (d / "recipe.yaml").write_text("name: s8_bn\nmodel: s8_bn\nepochs: 2\nseed: 3\noptimizer: {name: sgd, lr: .inf}\n")
    elif case == "deep-summary":
        (d / "summary.json").write_text("[" * 100_000 + "]" * 100_000)
    elif case == "sparse-4gb-summary":
        _sparse(d / "summary.json", head=b'{"status": "completed"')
    return d


def _strict_json(text: str) -> Any:
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("case", list(COMPARE_CASES))
def test_compare_reads_any_run_folder(case, tmp_path, run_cli):
    """A hostile run folder beside two good ones: compare exits 0, says one line about the bad
    folder (a mark or a skip), compares the others, reads no more than its bounds (a 4 GB
    file is not read into memory) and prints strict JSON: no Infinity or NaN anywhere."""
    import tracemalloc

    from cifarctl.analysis.compare import collect_runs, export, group_runs

    root = tmp_path / "runs"
    _hand_run(root, "good1", 1)
    _hand_run(root, "good2", 2, accs=(52.0, 64.0))
    _bad_folder(root, case)
    kind, needle = COMPARE_CASES[case]
    start = time.monotonic()
    tracemalloc.start()
    try:
        runs, skipped = collect_runs([root])
        doc = _strict_json(export(runs, group_runs(runs), "json", skipped))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80 << 20, f"read {peak >> 20} MB into memory"
    assert time.monotonic() - start < 30
    names = {r["name"]: r for r in doc["runs"]}
    assert {"good1", "good2"} <= set(names)
    assert names["good1"]["marks"] == []
    assert names["good1"]["best_acc"] == 60
    if kind == "skipped":
        assert "bad" not in names
        reasons = [s["reason"] for s in doc["skipped"] if Path(s["path"]).name == "bad"]
        assert len(reasons) == 1, doc["skipped"]
        assert needle in reasons[0], doc["skipped"]
    else:
        assert needle in "; ".join(names["bad"]["marks"]) if needle else names["bad"]["marks"] == [], names["bad"]
    for g in doc["groups"]:
        for key in ("best_mean", "best_std", "final_mean", "final_std", "time_mean", "time_std"):
            assert g[key] is None or isinstance(g[key], (int, float)) and abs(g[key]) <= 1.8e308
    if case == "values-1e308":  # the group of the three: a finite mean, not an overflow
        group = next(g for g in doc["groups"] if "bad" in g["runs"])
        assert group["best_mean"] == pytest.approx((60 + 64 + 1.7e308) / 3)
        assert names["bad"]["total_seconds"] == 1.7e308
        assert names["bad"]["images_per_s"] == 1.7e308
    # and through the command: exit 0, --json strict, one line about the bad folder in the view
    for args in (["--json"], ["--export", "csv"], []):
        code, out, exc = run_cli("compare", root, *args)
        assert exc is None, out
        assert code == 0, out
        assert "Traceback" not in out, out
        if args == ["--json"]:
            assert "Infinity" not in out
            assert "NaN" not in out
            _strict_json(out)
        if not args:
            about = [ln for ln in out.splitlines() if ln.startswith(("* bad:", "skipped")) and "bad" in ln]
            assert len(about) == (1 if needle else 0), out
            assert len(out.splitlines()) < 80, "no 300-digit numbers"
            assert max(map(len, out.splitlines())) < 400, "no 300-digit numbers"


# ------------------------------------------------------------------------ 7. weights and classes that do not fit
def _misfit(ckpt: dict, case: str) -> str:
    """Edit ``ckpt`` (a s8_bn checkpoint) so that it does not fit its model; the needle."""
    import torch

    sd = ckpt["model"]
    if case == "head-shape":
        sd["conv10.weight"] = torch.zeros(11, 32, 1, 1)
        sd["conv10.bias"] = torch.zeros(11)
        return ("2 shapes differ (conv10.weight: checkpoint 11x32x1x1, model 10x32x1x1; "
                "conv10.bias: checkpoint 11, model 10)")
    if case == "missing-keys":
        for k in ("conv10.weight", "conv10.bias", "conv9.conv.weight", "conv9.norm.weight"):
            del sd[k]
        return "4 missing from the checkpoint (conv9.conv.weight; conv9.norm.weight; conv10.weight; and 1 more)"
    if case == "unexpected-keys":
        sd["head.extra.weight"] = torch.zeros(3)
        return "1 unexpected in the checkpoint (head.extra.weight)"
    if case == "not-a-tensor":
        sd["conv10.bias"] = [0.0] * 10
        return "1 shape differs (conv10.bias: checkpoint list, model 10)"
    if case == "not-a-state-dict":
        ckpt["model"] = [1, 2, 3]
        return "its model weights are a list, not a state dict"
    if case == "wider-model_args":  # the stored model_args build another model than the weights
        ckpt["model_args"] = {"widths": [24, 12, 24, 16, 48]}
        return "shapes differ (conv7.conv.weight: checkpoint 32x16x3x3, model 48x16x3x3;"
    if case == "eleven-classes":
        ckpt["classes"] = [*CLASSES, "zebra"]
        return ("its class list has 11 classes (airplane, automobile, bird, cat, ... (11 in all)) but model "
                "'s8_bn' with model_args {'dropout': 0.05} gives 10 scores per image")
    if case == "unknown-model_args":
        ckpt["model_args"] = {"classes": 11}
        return "model 's8_bn': bad model_args: model_args.classes: unknown argument"
    if case == "classes-not-names":
        ckpt["classes"] = list(range(10))
        return "its class list is not a list of distinct class names"
    if case == "classes-repeated":
        ckpt["classes"] = ["cat"] * 10
        return "its class list is not a list of distinct class names"
    if case == "classes-other-order":
        ckpt["classes"] = list(reversed(CLASSES))
        return "its classes (truck, ship, horse, frog, ... (10 in all)) are not those of the data"
    raise AssertionError(case)


MISFIT_CASES = ["head-shape", "missing-keys", "unexpected-keys", "not-a-tensor", "not-a-state-dict",
                "wider-model_args", "eleven-classes", "unknown-model_args", "classes-not-names", "classes-repeated",
                "classes-other-order"]


@pytest.mark.parametrize("case", MISFIT_CASES)
def test_a_checkpoint_that_does_not_fit_is_one_line_with_the_mismatch(case, tmp_path, trained, run_cli):
    """eval and misclassified (and --resume, for the weights): one line naming the checkpoint
    and the actual mismatch (keys with both shapes; counts and first names of missing and
    unexpected keys; the class list against the model's outputs and the data's classes)."""
    import torch

    run = copy_run(trained, tmp_path / "run")
    needle = ""
    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        ckpt = torch.load(path, weights_only=True)
        needle = _misfit(ckpt, case)
        torch.save(ckpt, path)
    if case == "wider-model_args" and "widths" not in json.dumps(torch.load(path, weights_only=True)["model_args"]):
        pytest.fail("the edit did not stick")
    ckpt_path = run / "checkpoints" / "last.pt"
    for argv in (["eval", run, "--which", "last"], ["misclassified", run, "--which", "last", "--out", tmp_path / "m.png"]):
        code, out, exc = run_cli(*argv, "--device", "cpu")
        line = assert_clean_error(code, out, exc, needle)
        assert line.startswith(f"error: {ckpt_path}: "), line
        assert len(line) < 600
    assert not (run / "eval.json").exists()
    assert not (tmp_path / "m.png").exists()
    if case in ("head-shape", "missing-keys", "unexpected-keys"):  # resuming: the same detail
        code, out, exc = run_cli("train", "--resume", run, "--device", "cpu")
        assert_clean_error(code, out, exc, "cannot restore it", needle.split(" (")[1].split(";")[0])


# ------------------------------------------------------------------------ 8. eval and misclassified beside a training run
def test_eval_and_misclassified_write_beside_a_training_run(tmp_path, trained, run_cli, monkeypatch):
    """Reading a run while it trains is legitimate: eval and misclassified neither take nor
    wait for the run's lock, and what they write (eval.json, the PNG, which train never
    writes) is replaced atomically: at every moment of the write the file is the previous
    complete one, never part of the new one; the trainer's lock stays as it was."""
    from cifarctl import fsutil
    from cifarctl.runs import RunLock

    run = copy_run(trained, tmp_path / "run")
    kept = "eval-predictions-test.npz"
    (run / "eval.json").write_text('{"previous": true}\n')
    (run / kept).write_bytes(b"previous")
    Image.new("RGB", (4, 4)).save(run / "misclassified.png")
    seen: list[tuple[str, bytes]] = []
    real_fsync = os.fsync

    def watching_fsync(fd):  # a temp file is complete and synced; its target not yet replaced
        if stat.S_ISREG(os.fstat(fd).st_mode):
            temp = Path(os.readlink(f"/proc/self/fd/{fd}")).name  # .<target>.tmp-<pid>
            name = temp[1:].rpartition(".tmp-")[0]
            seen.append((name, (run / name).read_bytes()))
        return real_fsync(fd)

    names = ("eval.json", kept, "misclassified.png")
    before = {n: (run / n).read_bytes() for n in names}
    with RunLock(run):  # as `train` holds it for the life of the run
        monkeypatch.setattr(fsutil.os, "fsync", watching_fsync)
        code, out, exc = run_cli("eval", run, "--device", "cpu", "--json")
        assert exc is None, out
        assert code == 0, out
        code, out, exc = run_cli("misclassified", run, "--device", "cpu", "--n", "4", "--json")
        assert exc is None, out
        assert code == 0, out
        monkeypatch.setattr(fsutil.os, "fsync", real_fsync)
        with pytest.raises(UsageError, match=f"pid {os.getpid()} is writing it"):
            RunLock(run)  # still the trainer's
    # eval keeps its predictions, then writes eval.json; misclassified reads them back, draws the PNG
    assert [n for n, _ in seen] == [kept, "eval.json", "misclassified.png"]
    for name, content in seen:  # mid-write, a reader sees the old file, whole
        assert content == before[name], name
        assert (run / name).read_bytes() != before[name]  # and then the new one
    assert json.loads((run / "eval.json").read_text())["accuracy"] is not None
    Image.open(run / "misclassified.png").verify()
    _no_temps(run)


def test_a_training_run_spares_the_temp_files_of_a_live_writer(tmp_path):
    """A train (or resume) starting in a folder removes the temp files a killed writer left,
    but not those of a live process: an eval writing eval.json there at that moment."""
    from cifarctl.runs import RunFiles

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        files = {run / f".eval.json.tmp-{live.pid}": True, run / f".eval.json.tmp-{dead}": False,
                 run / "checkpoints" / f".last.pt.tmp-{dead}": False, run / f".curves.png.tmp-{live.pid}": True}
        for p in files:
            p.write_text("partial")
        RunFiles(run)
        assert {p: p.exists() for p in files} == files
    finally:
        live.kill()
        live.wait()


def test_a_checkpoint_replaced_while_it_is_read_is_read_whole(tmp_path, trained, monkeypatch):
    """A training run replaces last.pt (os.replace) while eval reads it: the checksums are
    checked and the tensors loaded from the same open file, so the result is the file that
    was checked, never a mix of two files or an unchecked newer one."""
    import zipfile

    import torch

    from cifarctl.checkpoints import load_checkpoint

    run = copy_run(trained, tmp_path / "run")
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    newer = torch.load(best, weights_only=True)
    newer["epoch"] = 99
    torch.save(newer, tmp_path / "newer.pt")
    expected = torch.load(last, weights_only=True)["epoch"]
    real = zipfile.ZipFile.testzip

    def replaced_meanwhile(self):
        result = real(self)
        if (tmp_path / "newer.pt").exists():
            os.replace(tmp_path / "newer.pt", last)  # as the trainer's save does
        return result

    monkeypatch.setattr(zipfile.ZipFile, "testzip", replaced_meanwhile)
    assert load_checkpoint(last)["epoch"] == expected
    assert load_checkpoint(last)["epoch"] == 99  # the next read sees the new file


# ------------------------------------------------------------------------ 9. lr-find options
LR_FIND_OPTIONS = [("--end-lr", "inf", "must be a finite number"), ("--end-lr", "nan", "must be a finite number"),
                   ("--end-lr", "1e400", "must be a finite number"), ("--end-lr", "-1", "greater than 0"),
                   ("--start-lr", "nan", "must be a finite number"), ("--start-lr", "0", "greater than 0"),
                   ("--start-lr", "100", "must be smaller than end_lr"),
                   ("--weight-decay", "inf", "must be a finite number")]


@pytest.mark.parametrize("option,value,needle", LR_FIND_OPTIONS, ids=[f"{o}={v}" for o, v, _ in LR_FIND_OPTIONS])
def test_lr_find_options_are_checked_before_the_sweep(option, value, needle, tmp_path, run_cli, monkeypatch):
    """Non-finite or out-of-range lr-find options: exit 2 naming the option, before any
    sweep (not an OverflowError after it) and before any folder is made."""
    from cifarctl.training import lrfind

    monkeypatch.setattr(lrfind, "run_lr_find", lambda *a, **k: pytest.fail("the sweep ran"))
    runs = tmp_path / "runs"
    code, out, exc = run_cli("lr-find", "s8_bn", f"{option}={value}", "--runs-dir", runs, "--device", "cpu")
    line = assert_clean_error(code, out, exc, needle)
    assert option.lstrip("-").replace("-", "_") in line.replace("-", "_"), line
    assert not runs.exists()
