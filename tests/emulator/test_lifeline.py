"""A stop signal that lands while a child is being forked (roost/emulator/lifeline.py)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from roost.emulator.lifeline import raise_keyboard_interrupt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_stop_during_a_fork_is_sent_again_instead_of_lost():
    """Raised inside subprocess's fork (an at-fork handler, logging's, swallows it) the
    KeyboardInterrupt was lost; the handler sends the signal again 50 ms later instead."""
    got = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    try:
        def _execute_child():  # the name subprocess.Popen forks under
            raise_keyboard_interrupt(signal.SIGUSR1, sys._getframe())

        _execute_child()  # does not raise
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [signal.SIGUSR1]
        try:
            raise_keyboard_interrupt(signal.SIGUSR1, sys._getframe())
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("outside a fork it raises KeyboardInterrupt")
    finally:
        signal.signal(signal.SIGUSR1, old)


def _stop_each_run(script, runs, first_s, step_s):
    """Start script runs times; each run gets its SIGTERM first_s + i * step_s after it says
    ready, and must end by its KeyboardInterrupt (exit 0) within 20 s."""
    for i in range(runs):
        p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(first_s + step_s * i)
        p.send_signal(signal.SIGTERM)
        try:
            assert p.wait(timeout=20) == 0
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("run %d went on after its SIGTERM" % i) from None


def test_a_command_stopped_while_it_spawns_children_stops():
    """A command spawns children one after another with a preexec_fn (as roost broker and
    emulate up do: die_with_parent), which makes CPython run the at-fork handlers, here one
    as logging registers (made slower, 3 ms, so that a SIGTERM often lands in it); then it
    waits (as roost broker does). Stopped while spawning, every run must end by
    its KeyboardInterrupt. Before, the first run already went on for good."""
    script = textwrap.dedent("""
        import os, signal, subprocess, sys, time
        from roost.emulator.lifeline import raise_keyboard_interrupt
        os.register_at_fork(after_in_parent=lambda: time.sleep(0.003))
        signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
        print("ready", flush=True)
        try:
            for _ in range(40):
                subprocess.Popen(["true"], preexec_fn=lambda: None).wait()
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            sys.exit(0)
    """)
    _stop_each_run(script, 15, 0.02, 0.007)


def test_a_command_stopped_while_it_finalizes_an_object_stops():
    """CPython drops an exception raised in a __del__ ("Exception ignored in"): a SIGTERM
    that came while an earlier Popen object was being finalized (its __del__) was lost, and
    the command went on (a CI run). Here most of the loop's time is spent in a __del__;
    every run must end by its KeyboardInterrupt."""
    script = textwrap.dedent("""
        import signal, sys, time
        from roost.emulator.lifeline import raise_keyboard_interrupt

        class Slow:
            def __del__(self):
                time.sleep(0.005)

        signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
        print("ready", flush=True)
        try:
            for _ in range(600):
                Slow()
                time.sleep(0.002)
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            sys.exit(0)
    """)
    _stop_each_run(script, 6, 0.05, 0.013)
