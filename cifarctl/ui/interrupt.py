"""Ctrl-C that is answered at once, even while the main thread is inside a long torch call.

Python runs signal handlers only between bytecodes of the main thread, so a Ctrl-C that
arrives during a multi-second backward pass on the CPU is silent until the call returns.
:func:`answer_interrupts` makes the interpreter's C-level handler also write to a pipe
(``signal.set_wakeup_fd``) that a helper thread reads: the helper prints the
acknowledgement immediately, the main thread gets its ``KeyboardInterrupt`` at its next
Python instruction (the block's ``finally`` clauses run, then the process exits 130),
and if it is still busy ``grace`` seconds later the helper ends the process with exit
130 itself. A second Ctrl-C exits at once. Only for work that has nothing half-written to lose (``lr-find``
writes its files after the sweep).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_INTERRUPTED = 130


def _write(stream, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


@contextmanager
def answer_interrupts(what: str, grace: float = 1.5, stream=None, exit_now: bool = True) -> Iterator[None]:
    """Within the block, Ctrl-C prints ``interrupted: stopping <what>`` at once and the
    process exits 130 within ``grace`` seconds (module docstring). With ``exit_now``, once
    the block has unwound from the ``KeyboardInterrupt`` (its ``finally`` clauses run) the
    process exits 130 at once too, instead of going through the interpreter's teardown.
    A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    out = stream if stream is not None else sys.stderr
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    done = threading.Event()
    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main interpreter: nothing to do
        signal.signal(signal.SIGINT, old_handler)
        os.close(read_fd)
        os.close(write_fd)
        yield
        return

    seen = [0]
    lock = threading.Lock()
    acked = [False]

    def ack() -> None:
        with lock:
            if not acked[0]:
                acked[0] = True
                _write(out, f"\ninterrupted: stopping {what} (Ctrl-C again to quit at once)\n")

    def watch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data or done.is_set():
                return
            if signal.SIGINT not in data:
                continue
            seen[0] += 1
            if seen[0] == 1:
                ack()
                threading.Thread(target=deadline, daemon=True).start()
            else:
                _quit()

    def deadline() -> None:
        if not done.wait(grace):
            _quit()

    def _quit() -> None:
        if done.is_set():
            return
        _exit_now(out)

    thread = threading.Thread(target=watch, name="cifarctl-interrupt", daemon=True)
    thread.start()
    stopped = False
    try:
        yield
    except KeyboardInterrupt:
        stopped = True
        ack()  # the main thread may have got there before the helper thread
        raise
    finally:
        done.set()
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGINT, old_handler)
        os.close(write_fd)  # the reader sees EOF and returns
        thread.join(timeout=1.0)
        os.close(read_fd)
        if stopped and exit_now:
            # the block has cleaned up; skip the interpreter's teardown, which takes
            # seconds with torch loaded on a busy machine
            _exit_now(out)


def _exit_now(out) -> None:
    _write(out, "interrupted\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(EXIT_INTERRUPTED)
