"""A write target that is not a regular file is never replaced: every command that takes
an output path refuses a character device, a FIFO or a socket there with exit 2 naming
it, and the node is still the same node afterwards (as root, ``--out /dev/null`` once
replaced the system's /dev/null with a regular file)."""

from __future__ import annotations

import os
import socket
import stat

import pytest


@pytest.fixture(scope="module")
def run(tiny_copy):
    return tiny_copy


def _node(tmp_path, kind: str):
    path = tmp_path / f"node-{kind}"
    if kind == "chardev":
        if os.geteuid() != 0:
            pytest.skip("mknod of a character device needs root")
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    return path


COMMANDS = {
    "compare-export": lambda run, out: ["compare", str(run), "--export", "csv", "--out", str(out)],
    "misclassified-out": lambda run, out: ["misclassified", str(run), "--out", str(out)],
    "report-readme": lambda run, out: ["report", str(run), "-o", str(out.parent)],
}


@pytest.mark.parametrize("kind", ["chardev", "fifo", "socket"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_node_as_output_is_refused_and_left_as_it_was(command, kind, run, tmp_path, cli):
    if command == "report-readme":  # the report's README.md is the node
        folder = tmp_path / "report"
        folder.mkdir()
        (folder / ".cifarctl-report").touch()  # a folder an earlier report wrote: the node rule applies
        node = _node(folder, kind)
        node = node.rename(folder / "README.md")
    else:
        node = _node(tmp_path, kind)
    before = os.lstat(node)
    res = cli(*COMMANDS[command](run, node))
    assert res.exit_code == 2, res.output
    assert str(node) in res.output
    assert "not a regular file" in res.output
    after = os.lstat(node)
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)


def test_a_symlink_is_replaced_not_followed(tmp_path):
    from cifarctl.fsutil import write_atomic

    target = tmp_path / "secret"
    target.write_text("keep")
    link = tmp_path / "out.csv"
    link.symlink_to(target)
    write_atomic(link, "new")
    assert target.read_text() == "keep"
    assert not link.is_symlink()
    assert link.read_text() == "new"
