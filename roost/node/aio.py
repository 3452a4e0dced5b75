"""asyncio portability for the node runtime and its transports (CPython and MicroPython).

The one place that turns MicroPython's wrapping ``ticks_ms`` into a growing ``now_ms()``
(CPython: ``time.monotonic``), and that suspends a task until a non-blocking socket is ready
(MicroPython: asyncio's own poller; CPython: the selector loop's add_reader/add_writer).
MicroPython's asyncio has no Queue and no datagram endpoints: transports poll their
non-blocking sockets through ``wait_readable``/``wait_writable``.
"""

import asyncio
import os
import sys
import time

MICROPYTHON = sys.implementation.name == "micropython"

# ---------------------------------------------------------------- the one clock

if hasattr(time, "ticks_ms"):
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
    _clock = [_ticks_ms(), 0]  # [last tick reading, milliseconds since start]

    def now_ms():
        """Milliseconds since start, growing (the wrapping tick counter unwrapped here only).

        Call it at least once per half wrap period (days on a board): every loop does."""
        t = _ticks_ms()
        _clock[1] += _ticks_diff(t, _clock[0])
        _clock[0] = t
        return _clock[1]

else:
    _t0 = time.monotonic()

    def now_ms():
        """Milliseconds since start, growing."""
        return int((time.monotonic() - _t0) * 1000)


async def sleep_ms(ms):
    """Sleep ms milliseconds (0: just yield to other tasks)."""
    if ms < 0:
        ms = 0
    if MICROPYTHON:
        await asyncio.sleep_ms(ms)
    else:
        await asyncio.sleep(ms / 1000)


async def wait_event_ms(event, ms):
    """Wait until event is set or ms pass; True if it was set."""
    if event.is_set():
        return True
    try:
        if MICROPYTHON:
            await asyncio.wait_for_ms(event.wait(), ms)
        else:
            await asyncio.wait_for(event.wait(), ms / 1000)
        return True
    except asyncio.TimeoutError:  # noqa: UP041 (MicroPython has no builtin)
        return False


# ---------------------------------------------------------------- socket readiness

if MICROPYTHON:

    def _mp_wait_read(sock):
        yield asyncio.core._io_queue.queue_read(sock)

    def _mp_wait_write(sock):
        yield asyncio.core._io_queue.queue_write(sock)

    async def wait_readable(sock):
        """Suspend until the non-blocking socket has data (or an error/EOF to read)."""
        await _mp_wait_read(sock)

    async def wait_writable(sock):
        """Suspend until the non-blocking socket can take more bytes (or connected)."""
        await _mp_wait_write(sock)

else:

    def _wake(fut):
        if not fut.done():
            fut.set_result(None)

    async def wait_readable(sock):
        """Suspend until the non-blocking socket has data (or an error/EOF to read)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = sock.fileno()
        loop.add_reader(fd, _wake, fut)
        try:
            await fut
        finally:
            loop.remove_reader(fd)

    async def wait_writable(sock):
        """Suspend until the non-blocking socket can take more bytes (or connected)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        fd = sock.fileno()
        loop.add_writer(fd, _wake, fut)
        try:
            await fut
        finally:
            loop.remove_writer(fd)


def watch_readable(sock, fn, *args):
    """CPython only: call fn(*args) from the event loop whenever sock is readable, until
    ``unwatch(sock)``; a busy receive loop then skips a task switch and two epoll_ctl
    calls per wake-up (``wait_readable`` registers and drops its reader each time).
    MicroPython's asyncio has no reader callbacks: its transports poll in a task."""
    asyncio.get_running_loop().add_reader(sock.fileno(), fn, *args)


def unwatch(sock):
    """Stop calling the function ``watch_readable`` gave for sock (before closing it)."""
    asyncio.get_running_loop().remove_reader(sock.fileno())


def random_seed():
    """A 32-bit seed from the OS (os.urandom exists on both interpreters and on boards)."""
    b = os.urandom(4)
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
