"""Run folders are untrusted input: no symlink or FIFO is followed, no path is built from
their content, a malformed file is "damaged" (never a traceback), and a report never
overwrites what it did not write."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest


@pytest.fixture(scope="module")
def trained(tiny_copy):
    return tiny_copy


def _copy(trained, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(trained, run, symlinks=True)
    return run


@pytest.mark.parametrize("name", [".lock", "metrics.jsonl", "log.txt"])
def test_resume_writes_through_no_symlink(name, trained, tmp_path, cli):
    run = _copy(trained, tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(outside)
    res = cli("train", "--resume", str(run), "--device", "cpu", "--set", "epochs=2", "--force")
    assert res.exit_code in (0, 1, 2), res.output
    assert outside.read_text() == "precious\n"
    assert "Traceback" not in res.output


def test_report_copies_no_symlinked_file(trained, tmp_path, cli):
    run = _copy(trained, tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    secret.chmod(0o600)
    (run / "lr_find.png").symlink_to(secret)
    res = cli("report", str(run), "-o", str(tmp_path / "rep"))
    assert res.exit_code == 0, res.output
    assert not any(b"secret" in p.read_bytes() for p in (tmp_path / "rep" / "images").iterdir())


def test_report_builds_no_path_from_run_content_and_a_fifo_does_not_hang(trained, tmp_path, cli, monkeypatch):
    run = _copy(trained, tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(recipe="../../../escape", data="/dev/zero", target={"checks": "oops"})
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "env.json").unlink()
    os.mkfifo(run / "env.json")
    monkeypatch.chdir(tmp_path)
    done = []
    t = threading.Thread(target=lambda: done.append(cli("report", str(run))), daemon=True)
    t.start()
    t.join(timeout=120)
    assert done, "report hung on a FIFO"
    res = done[0]
    assert res.exit_code == 0, res.output
    made = [p for p in (tmp_path / "reports").iterdir()]
    assert len(made) == 1
    assert made[0].parent == tmp_path / "reports"
    assert not (tmp_path.parent / "escape").exists()


def test_report_never_overwrites_what_it_did_not_write(trained, tmp_path, cli):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("the project's own README\n")
    res = cli("report", str(trained), "-o", str(repo))
    assert res.exit_code == 2
    assert "README.md" in res.output
    assert "give a new folder" in res.output
    assert (repo / "README.md").read_text() == "the project's own README\n"
    first = tmp_path / "rep"
    assert cli("report", str(trained), "-o", str(first)).exit_code == 0
    assert cli("report", str(trained), "-o", str(first)).exit_code == 0  # its own folder: written again
