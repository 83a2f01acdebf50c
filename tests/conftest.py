"""Shared test settings and fixtures (plain helpers live in ``helpers.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SHARED_ARCHIVE

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


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
