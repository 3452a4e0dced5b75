"""Scratch directories for runtime tests, on CPython and MicroPython (no tempfile there)."""

import os


def _hex(b):
    return "".join("%02x" % x for x in b)


def scratch_dir(label):
    """A new empty directory under /tmp (unique: random suffix)."""
    base = "/tmp/roost-test-" + label + "-" + _hex(os.urandom(6))
    os.mkdir(base)
    return base


def remove_tree(path):
    """Remove a directory made by scratch_dir (files and one level of subfolders)."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        p = path + "/" + n
        try:
            os.remove(p)
        except OSError:
            remove_tree(p)
    try:
        os.rmdir(path)
    except OSError:
        pass
