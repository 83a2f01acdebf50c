"""Shared test settings and fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

SHARED_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.xz"


@pytest.fixture(scope="session")
def data_cache_dir(tmp_path_factory) -> Path:
    """One decoded-data cache per test session, so the JPEG archive is decoded once."""
    d = tmp_path_factory.mktemp("cifarctl-cache")
    os.environ["CIFARCTL_DATA_DIR"] = str(d)
    return d


@pytest.fixture(scope="session")
def jpeg_archive(data_cache_dir) -> Path:
    """The shared CIFAR-10 JPEG copy (../shared/data beside the repo), or skip."""
    if not SHARED_ARCHIVE.is_file():
        pytest.skip(f"shared CIFAR-10 copy not found at {SHARED_ARCHIVE}")
    return SHARED_ARCHIVE


# ------------------------------------------------------------------------------------
# train / eval / resume fixtures (tests/test_train.py, test_eval.py, test_resume.py)
# ------------------------------------------------------------------------------------
import sys  # noqa: E402

CLI = [sys.executable, "-m", "cifarctl"]

# A few seconds of CPU training: s8_bn, 256 synthetic train / 64 test images, 4 steps/epoch.
TINY = ["--set", "data.source=synthetic:256:64", "--set", "data.batch_size=64",
        "--set", "epochs=2", "--set", "data.test_batch_size=32"]


@pytest.fixture
def cli():
    """Invoke the Typer app in-process: ``cli("train", "s8_bn", ...) -> Result``."""
    from typer.testing import CliRunner

    from cifarctl.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"


def only_run(runs: Path) -> Path:
    """The single run folder under ``runs``."""
    found = [p for p in runs.iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return found[0]
