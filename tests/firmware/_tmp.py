"""A scratch directory that works on CPython and MicroPython (no tempfile there)."""

import os
from binascii import hexlify


def _is_dir(path):
    try:
        return (os.stat(path)[0] & 0x4000) != 0
    except OSError:
        return False


def rmtree(path):
    """Remove a tree (kept here rather than imported from ota: a smaller test heap)."""
    try:
        os.stat(path)
    except OSError:
        return
    if _is_dir(path):
        for name in os.listdir(path):
            rmtree(path + "/" + name)
        os.rmdir(path)
    else:
        os.remove(path)


def makedirs(path):
    cur = ""
    for part in path.split("/"):
        cur = cur + "/" + part if cur or path.startswith("/") else part
        if part and not _is_dir(cur):
            os.mkdir(cur)


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
