"""The emulated fleet's MicroPython nodes run their code in place from a ROMFS image, as a
board with a ROMFS partition does: the bytecode costs no heap beside the image itself.

CPython drives the real micropython and mpy-cross (both required in CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from roost.emulator import fleet

IMPORT = ("import gc\nimport roost.node.nodemain as m\ngc.collect()\n"
          "print(m.__file__, gc.mem_free())")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, int]:
    if not (shutil.which("micropython") and shutil.which("mpy-cross")):
        if os.environ.get("CI"):
            pytest.fail("micropython and mpy-cross are required in CI")
        pytest.skip("needs micropython and mpy-cross")
    d = tmp_path_factory.mktemp("romfs")
    assert fleet.compile_mpy(d / "mpy")
    size = fleet.build_romfs(d / "mpy", d / "code.romfs")
    assert size == (d / "code.romfs").stat().st_size > 50_000
    return d, size


def _run(heap: int, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(["micropython", "-X", "heapsize=%d" % heap, "-c", code],
                          capture_output=True, text=True, timeout=60)


def test_node_argv_gives_the_board_ram_plus_the_image(image):
    d, size = image
    state = {"heap_k": 192, "romfs": {"path": str(d / "code.romfs"), "bytes": size},
             "nodes": {"n03": {"interp": "micropython", "config": "/x/config.json"}}}
    argv = fleet.node_argv(state, "n03")
    assert argv[1:3] == ["-X", "heapsize=%d" % (192 * 1024 + (size + 1023) // 1024 * 1024)]
    assert "VfsRom" in argv[4] and argv[4].endswith("m.main('/x/config.json')")
    state["romfs"] = None
    state["mpy_path"] = str(d / "mpy")
    argv = fleet.node_argv(state, "n03")
    assert argv[2] == "heapsize=%d" % (192 * 1024) and "VfsRom" not in argv[4]


def test_code_imported_from_romfs_runs_in_place(image):
    """64 KB beside the image hold the node's imports when they run from ROMFS; loaded into
    the heap from the same .mpy files, they do not fit in 64 KB."""
    d, size = image
    heap = 64 * 1024 + (size + 1023) // 1024 * 1024
    r = _run(heap, fleet.romfs_boot(str(d / "code.romfs"), size) + IMPORT)
    assert r.returncode == 0, r.stderr
    where, free = r.stdout.split()
    assert where == "/rom/roost/node/nodemain.mpy"
    assert int(free) > 16 * 1024
    r = _run(64 * 1024, "import sys\nsys.path.insert(0, %r)\n" % str(d / "mpy") + IMPORT)
    assert r.returncode != 0 and "MemoryError" in r.stdout + r.stderr
