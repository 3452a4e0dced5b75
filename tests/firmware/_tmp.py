"""A scratch directory that works on CPython and MicroPython (no tempfile there)."""

import os
from binascii import hexlify

from roost.firmware.ota import makedirs, rmtree


class TmpDir:
    def __init__(self):
        self.path = "/tmp/roost-fwtest-" + hexlify(os.urandom(6)).decode()
        makedirs(self.path)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        rmtree(self.path)
        return False


def write(path, text):
    i = path.rfind("/")
    if i > 0:
        makedirs(path[:i])
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()
