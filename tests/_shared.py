"""Where the shared CIFAR-10 JPEG copy lives for tests: ../shared/data beside the repo."""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ARCHIVE_NAME = "cifar10-jpeg.tar.xz"


def shared_archive() -> Path | None:
    """The shared archive's path, or None where it is absent (tests then skip)."""
    path = SHARED_DATA / ARCHIVE_NAME
    return path if path.is_file() else None
