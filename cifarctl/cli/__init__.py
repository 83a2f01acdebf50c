"""Command-line entry point: ``cifarctl`` and ``python -m cifarctl``.

Errors are turned into one line and an exit code by ``cifarctl.cli.app._Group``.
"""

from __future__ import annotations

from cifarctl.cli.app import app

# Each module registers its commands on `app` when imported.
from cifarctl.cli import models_cmd  # noqa: F401,E402
from cifarctl.cli import summary_cmd  # noqa: F401,E402
from cifarctl.cli import recipes_cmd  # noqa: F401,E402
from cifarctl.cli import data_cmd  # noqa: F401,E402
from cifarctl.cli import lrfind_cmd  # noqa: F401,E402
from cifarctl.cli import train_cmd  # noqa: F401,E402
from cifarctl.cli import eval_cmd  # noqa: F401,E402
from cifarctl.cli import predict_cmd  # noqa: F401,E402
from cifarctl.cli import export_cmd  # noqa: F401,E402
from cifarctl.cli import misclassified_cmd  # noqa: F401,E402
from cifarctl.cli import compare_cmd  # noqa: F401,E402
from cifarctl.cli import report_cmd  # noqa: F401,E402
from cifarctl.cli import sweep_cmd  # noqa: F401,E402

__all__ = ["app", "main"]

COMPLETE_VAR = "_CIFARCTL_COMPLETE"  # set by the shell's completion script (click's name for it)


def main() -> None:
    """Console-script entry point."""
    import os

    if os.environ.get(COMPLETE_VAR):  # a TAB: see cifarctl.cli.complete
        from cifarctl.cli.complete import skip_value_coercion

        skip_value_coercion()
    app()
