"""Upper bounds on what a recipe or a flag can ask for: each is a clear exit 2, before any
work (48 DataLoader workers on 2 cores, a 4,301-digit number, a 20000x20000 summary input,
a 100,000-image misclassified grid)."""

from __future__ import annotations

import pytest

HUGE = "1" + "0" * 4301

CASES = {
    "workers": (["recipes", "s8_bn", "--set", "data.workers=48"], "data.workers"),
    "digits-set": (["recipes", "s8_bn", "--set", f"epochs={HUGE}"], "a number of 4,302 characters"),
    "input-size": (["summary", "s8_bn", "--input-size", "3,20000,20000"], "at most 64 channels and 1024 pixels"),
    "misclassified-n": (["misclassified", "runs/x", "--n", "100000"], "--n"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unbounded_request_is_refused_with_exit_2(case, cli):
    argv, needle = CASES[case]
    res = cli(*argv)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output


def test_a_huge_number_in_a_recipe_file_names_its_line(tmp_path, cli):
    f = tmp_path / "big.yaml"
    f.write_text(f"name: x\nmodel: s8_bn\nepochs: {HUGE}\n")
    res = cli("recipes", str(f))
    assert res.exit_code == 2
    assert "line 3, column 9: a number of 4,302 characters" in res.output


def test_an_archive_member_declaring_more_than_a_cifar_file_is_refused_before_reading(tmp_path, cli):
    import tarfile

    info = tarfile.TarInfo("train/cat/0.png")
    info.size = 50 * 2**30  # declared, never written: the archive is a few KB
    archive = tmp_path / "bomb.tar"
    archive.write_bytes(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024)
    res = cli("data", str(archive))
    assert res.exit_code == 2, res.output
    assert "declares 53,687,091,200 bytes" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_a_device_or_fifo_is_not_a_data_source(kind, tmp_path, cli):
    import os
    import stat

    node = tmp_path / "data"
    if kind == "fifo":
        os.mkfifo(node)
    elif os.geteuid() == 0:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: read for ever
    else:
        pytest.skip("mknod needs root")
    res = cli("data", str(node))
    assert res.exit_code == 2
    assert "not a file or folder" in res.output
