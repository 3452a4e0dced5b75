"""The virtual board's ROMFS partition (MicroPython, board side; outside the flash).

A board built with ROMFS (MicroPython 1.25 and later, ``MICROPY_VFS_ROM``) has a flash
partition that ``vfs.rom_ioctl`` writes and that is mounted at /rom at power-on; its .mpy
files run in place from memory-mapped flash. The unix port has neither, so this module
stands in for ``vfs`` (``sys.modules["vfs"]``): the partition is a bytearray allocated
before anything else, so the heap is the board's RAM plus the partition, and its bytes
persist in a file beside the flash directory. ``rom_ioctl`` answers the calls that
``mpremote romfs query|deploy`` and ``roost flash --romfs`` make.
"""

import vfs as _vfs

for _n in dir(_vfs):  # everything the real module has (VfsRom, VfsPosix, mount, ...)
    if not _n.startswith("__"):
        globals()[_n] = getattr(_vfs, _n)

BLOCK = 4096  # erase block of the emulated flash
MIN_WRITE = 4  # smallest write the partition takes
_ENODEV = -19
_EINVAL = -22

_part = None  # [path, bytearray]


def _erase(buf, off, n):
    """Set n bytes from off to 0xFF, as erased flash reads (256 at a time: no big copy)."""
    ff = b"\xff" * 256
    mv = memoryview(buf)
    end = off + n
    while off < end:
        k = min(256, end - off)
        mv[off:off + k] = ff[:k]
        off += k


def setup(path, size):
    """Allocate the partition (the first block of the heap), read its file, and mount it at
    /rom when it holds a ROMFS image. True when mounted."""
    global _part
    buf = bytearray(size)
    try:
        with open(path, "rb") as f:
            f.readinto(buf)
    except OSError:  # never written: an erased partition
        _erase(buf, 0, size)
    _part = [path, buf]
    try:
        _vfs.mount(_vfs.VfsRom(buf), "/rom")
    except OSError:  # no ROMFS image in it (erased, or a half-written deploy)
        return False
    return True


def rom_ioctl(op, *args):
    """vfs.rom_ioctl of a ROMFS build: 1 partitions, 2 the partition's memory, 3 prepare a
    write (erase), 4 write, 5 write done (persist), 6 the erase block size."""
    if _part is None:
        return 0 if op == 1 else _ENODEV
    buf = _part[1]
    if op == 1:
        return 1
    if args and args[0] != 0:
        return _ENODEV
    if op == 2:
        return memoryview(buf)
    if op == 3:  # (id, length) or (id, offset, length)
        off, n = (0, args[1]) if len(args) == 2 else (args[1], args[2])
        if off < 0 or n < 0 or off + n > len(buf):
            return _EINVAL
        _erase(buf, off, n)
        return MIN_WRITE
    if op == 4:  # (id, offset, data)
        off, data = args[1], args[2]
        if off < 0 or off + len(data) > len(buf):
            return _EINVAL
        buf[off:off + len(data)] = data
        return 0
    if op == 5:  # the partition reaches the flash file in one write
        with open(_part[0], "wb") as f:
            f.write(buf)
        return 0
    if op == 6:
        return BLOCK
    return _EINVAL
