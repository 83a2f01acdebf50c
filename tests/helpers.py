"""What several test modules share: the command line, tiny training settings, run-folder checks.

Imported as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``); fixtures
stay in ``conftest.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The shared JPEG copy of CIFAR-10: ../shared/data beside the repo.
SHARED_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.xz"

CLI = [sys.executable, "-m", "cifarctl"]

# A few seconds of CPU training: s8_bn, 256 synthetic train / 64 test images, 4 steps/epoch.
TINY = ["--set", "data.source=synthetic:256:64", "--set", "data.batch_size=64",
        "--set", "epochs=2", "--set", "data.test_batch_size=32"]

RUN_FILES = ("recipe.yaml", "env.json", "metrics.jsonl", "summary.json", "log.txt",
             "checkpoints/last.pt", "checkpoints/best.pt", "curves.png")


def train_tiny(runs: Path, name: str, *extra: str, recipe: str = "s8_bn") -> Path:
    """A TINY training run in-process (CliRunner), as ``runs/name``; fails the test if it fails."""
    from typer.testing import CliRunner

    from cifarctl.cli import app

    res = CliRunner().invoke(app, ["train", recipe, *TINY, "--runs-dir", str(runs), "--name", name, *extra])
    assert res.exit_code == 0, res.output
    return runs / name


def copy_run(src: Path, dest: Path) -> Path:
    """A copy of the run folder ``src`` at ``dest`` (times kept, no lock)."""
    import shutil

    shutil.copytree(src, dest, symlinks=True)
    (dest / ".lock").unlink(missing_ok=True)
    return dest


def shared_archive() -> Path | None:
    """The shared archive's path, or None where it is absent (tests then skip)."""
    return SHARED_ARCHIVE if SHARED_ARCHIVE.is_file() else None


def only_run(runs: Path) -> Path:
    """The single run folder under ``runs``."""
    found = [p for p in runs.iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def epoch_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("epoch ")]


def assert_complete(run: Path, epochs: int) -> dict:
    """Every file of a completed run folder is there and agrees with metrics.jsonl."""
    for name in RUN_FILES:
        assert (run / name).is_file(), f"{name} missing in {run}"
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                            "seconds", "train_seconds", "images_per_s"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_done"] == epochs
    assert summary["final_test_acc"] == rows[-1]["test_acc"]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert isinstance(summary["target"]["passed"], bool)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return summary


def parse_markdown(text: str) -> list[dict[str, list]]:
    """The tables in a markdown text: ``[{"header": [...], "rows": [[...], ...]}, ...]``.

    A reader for the tables :func:`cifarctl.tabular.markdown` writes (escaped ``|`` kept as
    text), to check that what was written reads back."""
    tables, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|") and s.endswith("|"):
            cells = _split_md_row(s)
            if cur is None:
                cur = {"header": cells, "rows": []}
            elif all(set(c) <= set(":-") and c for c in cells):
                continue
            else:
                cur["rows"].append(cells)
        elif cur is not None:
            tables.append(cur)
            cur = None
    if cur is not None:
        tables.append(cur)
    return tables


def _split_md_row(s: str) -> list[str]:
    cells, buf, i = [], "", 1
    while i < len(s) - 1:
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) - 1:
            buf += s[i + 1]
            i += 2
            continue
        if ch == "|":
            cells.append(buf.strip())
            buf = ""
        else:
            buf += ch
        i += 1
    cells.append(buf.strip())
    return cells


def read_pty(fd: int, pid: int, timeout: float) -> tuple[str, int]:
    """Everything a child on a pseudo-terminal wrote (until it closes the terminal or is
    silent for ``timeout`` seconds), decoded, and its exit code."""
    import os
    import select

    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return out.decode("utf-8", "replace"), os.waitstatus_to_exitcode(status)
