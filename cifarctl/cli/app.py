"""The Typer application and the consoles every command prints to.

Commands live in sibling modules (``models_cmd.py``, ``data_cmd.py``, ...) and register
themselves on ``app``; ``cifarctl.cli`` imports them. Nothing here imports torch.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.console import Console
from typer._click.exceptions import BadOptionUsage  # typer bundles its own click
from typer.core import TyperGroup

from cifarctl import __version__
from cifarctl.cli import complete
from cifarctl.errors import EXIT_INTERRUPTED, CifarctlError, Stopped

console = Console()
err_console = Console(stderr=True)

# Set by the --debug flag: show tracebacks instead of one-line errors.
state = {"debug": False}


class _Group(TyperGroup):
    """Turns library errors into one line on stderr and their exit code; a stop the user
    asked for (:class:`~cifarctl.errors.Stopped`, a second Ctrl-C) is said without ``error:``.

    Done here rather than in ``main()`` so ``CliRunner`` tests see the same behaviour.
    """

    def invoke(self, ctx):
        from cifarctl.ui.render import print_line  # wraps between words on a terminal; no markup

        try:
            return super().invoke(ctx)
        except Stopped as exc:
            if state["debug"]:
                raise
            print_line(err_console, str(exc), "yellow")
            raise typer.Exit(exc.exit_code) from None
        except CifarctlError as exc:
            if state["debug"]:
                raise
            print_line(err_console, str(exc), lead="error:", lead_style="bold red")
            raise typer.Exit(exc.exit_code) from None
        except BadOptionUsage as exc:  # "Option '--tta' requires an argument."
            _name_the_choices(exc, [p for c in self.commands.values() for p in c.params])
            raise
        except MemoryError:
            if state["debug"]:
                raise
            print_line(err_console, "out of memory: the data or the request is larger than this machine can hold",
                       lead="error:", lead_style="bold red")
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            if state["debug"]:
                raise
            from cifarctl.checkpoints import second_signal_message

            # a second Ctrl-C/SIGTERM (checkpoints.SecondSignal) says what it stopped; a bare one, "interrupted"
            text = second_signal_message(exc) if hasattr(exc, "signal_name") else "interrupted"
            print_line(err_console, text, "yellow")
            raise typer.Exit(getattr(exc, "exit_code", EXIT_INTERRUPTED)) from None  # 143 for SIGTERM

def _name_the_choices(exc, params) -> None:
    """An option given without its value: when its metavar lists the choices (``a|b|c``),
    the error names them (click raises it before the command's context exists)."""
    metavars = {getattr(p, "metavar", None) or "" for p in params if exc.option_name in getattr(p, "opts", ())}
    metavar = next(iter(metavars)) if len(metavars) == 1 else ""
    if "|" in metavar and "requires an argument" in exc.message:
        choices = metavar.split("|")
        exc.message = (f"{exc.message.rstrip('.')}: one of {', '.join(choices)} "
                       f"(e.g. {exc.option_name} {choices[1] if len(choices) > 1 else choices[0]}).")


class OutputFormat(str, Enum):
    """How a command prints its tables."""

    table = "table"
    md = "md"
    json = "json"


FORMAT_HELP = ("table (a terminal table; off a terminal every column in full), md (GitHub markdown "
               "tables, to paste into a write-up) or json.")
FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f", help=FORMAT_HELP)]
# the first argument of eval, predict, misclassified and export
RunTarget = Annotated[str, typer.Argument(
    metavar="RUN_DIR|CHECKPOINT", help="A run folder (uses checkpoints/<which>.pt) or a .pt file.",
    show_default=False, autocompletion=complete.complete_run_or_checkpoint)]


def check_set(values: list[str] | None) -> list[str] | None:
    """``--set`` values are KEY=VALUE: ``--set epochs 1`` is refused with that, before Typer
    would call the ``1`` an unexpected extra argument."""
    for v in values or ():
        if "=" not in v:
            raise typer.BadParameter(f"{v!r} has no '=': write --set KEY=VALUE, e.g. --set epochs=1")
    return values


def check_name(ref: str | None, *, models: bool = False) -> None:
    """Answer a mistyped recipe (or, with ``models``, model) name at once, from the file
    names alone: the schema and torch are imported only for a name that exists. Paths
    are left to the loader, which says what is wrong with them."""
    import os

    from cifarctl.cli.complete import model_names, recipe_names
    from cifarctl.errors import UsageError, did_you_mean

    if ref is None or os.path.lexists(ref) or ref.endswith((".yaml", ".yml")) or os.sep in ref:
        return
    known = recipe_names() + (model_names() if models else [])
    if ref in known:
        return
    if models:
        raise UsageError(f"unknown model or recipe {ref!r}{did_you_mean(ref, known)}; "
                         "`cifarctl models` and `cifarctl recipes` list them")
    raise UsageError(f"unknown recipe {ref!r}{did_you_mean(ref, known)}; `cifarctl recipes` lists the bundled ones")


def output_format(fmt: OutputFormat, as_json: bool) -> str:
    """``--format``, with ``--json`` as its shorthand for json."""
    return "json" if as_json else fmt.value


app = typer.Typer(
    name="cifarctl",
    help="Train and understand CIFAR-10 classifiers: recipes for the classic course "
    "assignments, a fast device-resident engine, and tools to inspect what went wrong.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: typer.rich_utils costs ~0.15 s of start-up
    cls=_Group,
)


def _version(value: bool) -> None:
    if value:
        print(f"cifarctl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    state["debug"] = debug
