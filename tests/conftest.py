"""Shared test settings and fixtures (plain helpers live in ``helpers.py``)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import SHARED_ARCHIVE, copy_run, train_tiny

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# The suite never writes into the user's home: every test (and every process it starts)
# gets this run's own cache folder and a HOME of its own; at the end, the run fails if
# anything of cifarctl's reached a HOME. With pytest-xdist the pytest process that starts
# the workers owns the folder: each worker has its own sub-folder and HOME in it, and all
# share its cache folder (decoded-data files are written atomically: a second writer of the
# same file is harmless), so the JPEG archive is decoded once per run, not once per worker.
# That first process checks every HOME and removes the folder, once the workers are done.
_ROOT_VAR = "CIFARCTL_TESTS_ROOT"  # set by the first pytest process, for its workers
_WORKER = os.environ.get("PYTEST_XDIST_WORKER") if os.environ.get(_ROOT_VAR) else None
if _WORKER:
    _TMP_ROOT = Path(os.environ[_ROOT_VAR])
    _OWN = _TMP_ROOT / _WORKER
else:
    _TMP_ROOT = _OWN = Path(tempfile.mkdtemp(prefix="cifarctl-tests-"))
    os.environ[_ROOT_VAR] = str(_TMP_ROOT)
os.environ["CIFARCTL_DATA_DIR"] = str(_TMP_ROOT / "cache")
os.environ["HOME"] = str(_OWN / "home")
os.environ.pop("XDG_CACHE_HOME", None)
(_OWN / "home").mkdir(parents=True, exist_ok=True)

# Off a terminal, as CI runs them: no width from the caller's terminal. An xdist worker would
# otherwise inherit COLUMNS and LINES from the C environment of the pytest process that
# started it (set there by readline), and tables would be fitted to 80 columns.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

# Each xdist worker (and every process it starts) gets its share of the cores for torch's
# threads, set before torch is imported: two workers of two threads each on two cores wait
# on each other's descheduled threads (a tiny training run took several times as long).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

# Test-only faults (tests/faults/sitecustomize.py): every child process loads them at start-up,
# and this process now; they act only when a CIFARCTL_TEST_* variable asks.
_FAULTS = str(Path(__file__).resolve().parent / "faults")
_PATH = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != _FAULTS]
os.environ["PYTHONPATH"] = os.pathsep.join([_FAULTS, *_PATH])
sys.path.insert(0, _FAULTS)
import sitecustomize as _faults  # noqa: E402  (ours: tests/faults comes first on the path)

if not hasattr(_faults, "install"):  # another sitecustomize was imported first: load ours by path
    import importlib.util

    _spec = importlib.util.spec_from_file_location("cifarctl_test_faults", Path(_FAULTS) / "sitecustomize.py")
    _faults = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_faults)
_faults.install()


def pytest_sessionfinish(session, exitstatus):
    if _WORKER:  # a worker's exit status is not the run's: the first process checks its HOME
        return
    homes = [_TMP_ROOT / "home", *_TMP_ROOT.glob("*/home")]
    leaked = [str(p) for home in homes for p in home.rglob("*") if "cifarctl" in p.name]
    if leaked:
        print(f"\nerror: the tests wrote into HOME: {leaked[:5]}")
        session.exitstatus = 1
    shutil.rmtree(_TMP_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def data_cache_dir() -> Path:
    """One decoded-data cache per test run (shared by the xdist workers), so the JPEG archive
    is decoded once."""
    return Path(os.environ["CIFARCTL_DATA_DIR"])


@pytest.fixture(scope="session")
def jpeg_archive(data_cache_dir) -> Path:
    """The shared CIFAR-10 JPEG copy (../shared/data beside the repo), or skip."""
    if not SHARED_ARCHIVE.is_file():
        pytest.skip(f"shared CIFAR-10 copy not found at {SHARED_ARCHIVE}")
    return SHARED_ARCHIVE


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The session's one TINY training run (s8_bn, 2 epochs of 4 steps, synthetic data),
    trained once. Read it; a module that writes into a run folder takes ``tiny_copy``."""
    return train_tiny(tmp_path_factory.mktemp("tiny"), "r")


@pytest.fixture(scope="module")
def tiny_copy(tiny_run, tmp_path_factory) -> Path:
    """This module's own copy of the session's tiny run (named ``r``)."""
    return copy_run(tiny_run, tmp_path_factory.mktemp("runs") / "r")


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


@pytest.fixture
def fake_train(monkeypatch):
    """Sweep trials "trained" in-process by :class:`sweep_fakes.FakeTrain` (the sweep's one
    seam: its ``subprocess.Popen``)."""
    from sweep_fakes import FakeTrain

    from cifarctl.training import sweep

    FakeTrain.calls, FakeTrain.diverge_lr, FakeTrain.hook = [], None, None
    monkeypatch.setattr(sweep.subprocess, "Popen", FakeTrain)
    return FakeTrain
