"""How long processes live: children that end with the process that started them (Linux's
PR_SET_PDEATHSIG), and commands that a kill stops as Ctrl-C does. CPython-only."""

import ctypes
import os
import signal
import threading

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


# frames in which CPython prints and drops an exception instead of raising it: a child
# being forked (logging's at-fork handler runs there) and a finalizer (an earlier Popen's)
_SWALLOWED_IN = ("_execute_child", "__del__")


def raise_keyboard_interrupt(signum, frame):
    """A signal handler: SIGTERM (a CI step's timeout, a kill) or SIGHUP (a closed terminal)
    stops a command as Ctrl-C does, through its cleanup. Not where the KeyboardInterrupt
    would be swallowed and the command go on (roost broker kept running after a SIGTERM
    that came while it forked a child; a test's command, after one that came while an old
    Popen object was finalized): the signal is sent again 50 ms later instead."""
    f = frame
    while f is not None:
        if f.f_code.co_name in _SWALLOWED_IN:
            t = threading.Timer(0.05, os.kill, (os.getpid(), signum))
            t.daemon = True
            t.start()
            return
        f = f.f_back
    raise KeyboardInterrupt
