"""Run plain ``test_*`` functions under MicroPython (or CPython), one file after another.

Usage: micropython -X heapsize=100K tests/mpy_runner.py [--path=DIR] tests/common/test_prng.py ...
--path=DIR imports from DIR (a tree of .mpy files built by mpy-cross, as a board runs them)
instead of the source tree.
Prints one line per failure and a closing 'N passed, N failed' line; exits 1 on failure.
Test files must not import pytest; a module-level ``MPY_SKIP = ("test_name", ...)`` skips
tests that need CPython-only parts.
"""

import gc
import sys

_VERBOSE = False


def _repo_root(path):
    i = path.rfind("tests/")
    return path[:i] if i >= 0 else ""


def _module_name(path):
    name = path
    if name.endswith(".py"):
        name = name[:-3]
    i = name.find("tests/")
    if i >= 0:
        name = name[i:]
    return name.replace("/", ".")


def _unload(name):
    """Drop a module and the attribute its parent package holds for it."""
    del sys.modules[name]
    i = name.rfind(".")
    parent = sys.modules.get(name[:i]) if i > 0 else None
    if parent is not None:
        try:
            delattr(parent, name[i + 1 :])
        except (AttributeError, TypeError):
            pass


def main(argv):
    passed = failed = skipped = 0
    only = None
    path = None
    files = []
    for a in argv[1:]:
        if a.startswith("-k="):
            only = a[3:]
        elif a.startswith("--path="):
            path = a[7:]
        else:
            files.append(a)
    if path is None:
        path = (_repo_root(argv[0]) or ".").rstrip("/") or "."
    if path not in sys.path:
        sys.path.insert(0, path)
    if hasattr(gc, "threshold"):
        # MicroPython: collect after every 4 KB allocated rather than only when the heap is
        # full. Garbage then never spreads over the whole heap, so the long-lived objects a
        # test builds pack into the holes loading the code left, and a board-sized heap keeps
        # larger free blocks (the Paxos cluster tests need 8-9 KB less heap this way).
        gc.threshold(4096)
    for path in files:
        modname = _module_name(path)
        loaded = set(sys.modules)
        try:
            mod = __import__(modname)
            for part in modname.split(".")[1:]:
                mod = getattr(mod, part)
        except Exception as e:  # report the import failure as a failed test file
            failed += 1
            print("FAIL import", modname, type(e).__name__, e)
            sys.print_exception(e) if hasattr(sys, "print_exception") else None
            continue
        skip = getattr(mod, "MPY_SKIP", ())
        names = sorted(n for n in dir(mod) if n.startswith("test_"))
        for name in names:
            if only and only not in name:
                continue
            if name in skip and sys.implementation.name == "micropython":
                skipped += 1
                continue
            fn = getattr(mod, name)
            if not callable(fn):
                continue
            gc.collect()
            try:
                fn()
                passed += 1
            except Exception as e:
                failed += 1
                print("FAIL", modname + "." + name, type(e).__name__, e)
                if hasattr(sys, "print_exception"):
                    sys.print_exception(e)
        # Unload what this file imported: a board's heap holds one file's code at a time.
        for name in list(sys.modules):
            if name not in loaded:
                _unload(name)
        mod = fn = None
        gc.collect()
        if _VERBOSE:
            print('heap free after', modname, gc.mem_free())
    gc.collect()
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print("micropython: " + line)
    return 1 if failed or not passed else 0


sys.exit(main(sys.argv))
