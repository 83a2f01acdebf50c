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
