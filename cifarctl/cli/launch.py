"""``cifarctl train --nproc N``: re-run the same command under torchrun on N processes.

:func:`command_args` rebuilds the command line from the parsed click parameters,
:func:`launch` runs ``python -m torch.distributed.run --standalone --nproc_per_node N -m
cifarctl ARGS`` and returns rank 0's own exit code, which each worker leaves with
:func:`record_exit` (torchrun itself only says 1). What the workers do once launched is
:mod:`cifarctl.training.distributed`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cifarctl.errors import UsageError, WriteError

ENV_EXIT_FILE = "CIFARCTL_EXIT_FILE"  # set by launch(): where rank 0 writes its exit code


def record_exit(code: int) -> None:
    """Rank 0 leaves its exit code where :func:`launch` finds it (torchrun itself says 1)."""
    path = os.environ.get(ENV_EXIT_FILE)
    from cifarctl.training.distributed import env_rank

    if path and env_rank() == 0:
        try:
            Path(path).write_text(str(int(code)))
        except OSError:
            pass




def command_args(ctx) -> list[str]:
    """The ``cifarctl`` arguments that repeat the click command ``ctx``, without ``--nproc``.

    Built from the parsed parameters (not ``sys.argv``), so it works from ``CliRunner``
    too; global flags of the parent (``--debug``) come first.
    """
    args: list[str] = []
    parent = ctx.parent
    if parent is not None:
        for p in parent.command.params:
            if getattr(p, "is_flag", False) and not p.is_eager and parent.params.get(p.name) is True:
                args.append(p.opts[0])
    args.append(ctx.info_name)
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if p.name == "nproc" or value is None:
            continue
        if p.param_type_name == "argument":
            args.extend(str(v) for v in (value if p.multiple or p.nargs != 1 else [value]))
        elif p.is_flag:
            if value:
                args.append(p.opts[0])
        elif p.multiple:
            for v in value:
                args += [p.opts[0], str(v)]
        else:
            args += [p.opts[0], str(value)]
    return args


def launch_command(nproc: int, args: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m cifarctl ARGS``.

    ``--standalone`` picks a free local port, so parallel launches do not collide.
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "cifarctl", *args]


def launch(nproc: int, args: list[str]) -> int:
    """Run ``cifarctl ARGS`` on ``nproc`` processes under torchrun; its exit code.

    torchrun runs in its own process group (setsid) and SIGINT/SIGTERM reach it once, from here: it
    passes them on to the workers, which save and stop together. ``OMP_NUM_THREADS``
    defaults to the CPU cores divided by ``nproc``. torchrun exits 1 when a worker
    exits non-zero; rank 0's own exit code (2, 3, 4, 130, 143, ...) is returned instead
    when it left one (:func:`record_exit`).
    """
    import tempfile

    from cifarctl.training.distributed import launched

    if launched():
        raise UsageError("--nproc inside torchrun: the processes are already launched")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        fd, exit_file = tempfile.mkstemp(prefix="cifarctl-exit-")
    except OSError as exc:
        raise WriteError(f"cannot create a temp file in {tempfile.gettempdir()} ({exc.strerror or exc}): "
                         "set TMPDIR to a writable folder") from None
    os.close(fd)
    env[ENV_EXIT_FILE] = exit_file
    old = {}
    try:
        proc = subprocess.Popen(launch_command(nproc, args), env=env, start_new_session=True)
        forward = lambda signum, frame: proc.send_signal(signum)  # noqa: E731
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        code = proc.wait()
        recorded = Path(exit_file).read_text().strip()
        return int(recorded) if code != 0 and recorded.isdigit() else code
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        Path(exit_file).unlink(missing_ok=True)
