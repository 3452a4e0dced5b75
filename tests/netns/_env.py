"""Shared bits of the namespace tests: when to skip, how to start the helper tools."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from roost.emulator.netns import missing_tools

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOL = str(pathlib.Path(__file__).with_name("_tool.py"))
CHILD_ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def require(*extra):
    """Skip (with the reason) when root mode cannot run here; in CI (CI set) fail instead."""
    missing = [m for m in missing_tools() if m in ("root", "ip") or m in extra]
    if "zeroconf" in extra:
        try:
            import zeroconf  # noqa: F401
        except ImportError:
            missing.append("the zeroconf package")
    if not missing:
        return
    why = "network-namespace tests need " + ", ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(why + " (CI runs as root with iproute2 and nftables installed)")
    pytest.skip(why)


def py(fab, host, args, **kw):
    """Start `python args...` inside a host's namespace with the repo importable."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    return fab.run_in(host, [sys.executable] + list(args), env=CHILD_ENV, cwd=str(ROOT), **kw)


def finish(proc, timeout_s=30):
    """Wait for a helper; return its last stdout line parsed as JSON."""
    out, err = proc.communicate(timeout=timeout_s)
    lines = [x for x in out.splitlines() if x.strip()]
    assert proc.returncode == 0 and lines, "helper failed: rc=%s out=%r err=%r" % (
        proc.returncode, out[-500:], err[-1500:])
    return json.loads(lines[-1])


def udp(fab, src, dst, n=5, port=9000, seconds=5.0, stop_at=None):
    """Send n datagrams from src to dst; returns how many arrived (waits at most seconds,
    less once all have come: the sender's interpreter may take a while to start on a busy
    machine; tests that expect nothing pass a short window)."""
    rx = py(fab, dst, [TOOL, "recv", str(port), str(seconds), str(stop_at or n)])
    assert rx.stdout.readline().strip() == "ready"
    tx = py(fab, src, [TOOL, "send", fab.address(dst), str(port), str(n)])
    sent = finish(tx)
    got = finish(rx)
    return got["count"], sent
