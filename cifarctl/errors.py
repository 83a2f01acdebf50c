"""Errors that the CLI turns into one line on stderr and an exit code.

Library code raises these; ``cifarctl.cli`` catches them, prints ``error: <message>``
(a :class:`Stopped` without ``error:``: the user asked for it) and exits with
``exit_code``. A traceback is only shown with ``--debug``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Exit codes, documented in the README.
EXIT_USAGE = 2        # bad input: recipe, model name, path, option
EXIT_FAILURE = 1      # a run or command failed for another reason
EXIT_DIVERGED = 3     # NaN/inf loss during training
EXIT_BAD_LOSS = 4     # negative loss (wrong loss for the model's outputs)
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_HANGUP = 129  # SIGHUP: the terminal or SSH connection went away


class CifarctlError(Exception):
    """A user-facing error: one line, with a fix where one is known."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class Stopped(CifarctlError):
    """A stop the user asked for (Ctrl-C, SIGTERM) that left things resumable: not an error,
    so it is printed without ``error:``; ``exit_code`` is 130 or 143."""

    exit_code = EXIT_INTERRUPTED


class UsageError(CifarctlError):
    """Bad input from the user (exit code 2)."""

    exit_code = EXIT_USAGE


class RecipeError(UsageError):
    """A recipe failed validation; ``problems`` holds every problem found."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "; ".join(problems)
        super().__init__(f"{source}: {lines}")


class DataError(UsageError):
    """A data source is missing, malformed, or unreachable."""


class CheckpointError(UsageError):
    """A checkpoint or run folder cannot be read."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds objects that weights-only loading refuses (possibly malicious)."""


class WriteError(CifarctlError, OSError):
    """A file could not be written (disk full, size limit, permissions); exit code 1.

    Also an ``OSError``, so code that handles failed writes as such keeps working.
    """


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices closest to ``name`` (case-insensitive), best first."""
    choices = list(choices)
    lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.5)
    if not hits:
        hits = [c for c in lower if name.lower() in c or c in name.lower()][:n]
    return [lower[h] for h in hits]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean x?)' or '' when nothing is close."""
    hits = closest(name, choices)
    if not hits:
        return ""
    return " (did you mean " + " or ".join(repr(h) for h in hits) + "?)"
