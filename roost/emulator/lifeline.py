"""How long processes live: children that end with the process that started them (Linux's
PR_SET_PDEATHSIG), and commands that a kill stops as Ctrl-C does. CPython-only."""

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL):
    """A ``preexec_fn``: the child gets ``sig`` when its parent ends, however it ends (a
    SIGKILL too, or a stop that came while the child was being started)."""

    parent = os.getpid()

    def arm() -> None:  # runs in the child, before exec
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
        except OSError:
            return
        if os.getppid() != parent:  # the parent ended before the line was armed
            os.kill(os.getpid(), sig)

    return arm


def raise_keyboard_interrupt(signum, frame):  # noqa: ARG001
    """A signal handler: SIGTERM (a CI step's timeout, a kill) or SIGHUP (a closed terminal)
    stops a command as Ctrl-C does, through its cleanup."""
    raise KeyboardInterrupt
