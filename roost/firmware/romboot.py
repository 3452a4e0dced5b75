"""The code slot in a board's ROMFS partition, rewritten at boot when the slot changes.
MicroPython-safe.

A board whose firmware has a ROMFS partition (``vfs.rom_ioctl``) runs its node code in place
from flash: the heap keeps only what the code allocates. An update over the air still
arrives as files in the idle slot (``slots/b/roost/**.mpy``); loaded from there the code
would fill the heap of a board that only fits with ROMFS, and the update would roll back.
So boot.py calls ``ensure(slot)`` right after ``bootsel.select`` and before anything is
imported from /rom: when the partition holds another slot's code, the slot's files are
written into it as a ROMFS image (the layout mpremote's ``romfs deploy`` writes, built
here from the files, streamed a 4 KB block at a time) and the board resets so that its
firmware mounts the new image. A roll-back is the same step the other way.

``slots/rom.json`` names the slot whose code the partition holds; ``roost flash --romfs``
writes it, and without it the partition is left alone (it is not roost's). It says
"unknown" while the partition is erased and written, so a power cut in between leaves
"unknown" and the next boot writes the partition afresh. A
slot flashed with ``--romfs`` has no files (its code went straight to the partition):
before the partition is overwritten, its image is kept as ``slots/<slot>/rom.img`` so
that a roll-back can write it back.

It imports nothing from ``roost``: like ``bootsel``, ``roost build`` places it at the flash
root, where an update never replaces it.
"""

import json
import os

MARKER = "slots/rom.json"
IMAGE = "rom.img"  # a slot's code kept as a ROMFS image (a slot flashed with --romfs)
HEADER = b"\xd2\xcd\x31"
_DIRECTORY = 4
_FILE = 5
_VERBATIM = 2
_BLOCK = 4096


def _path(root, rel):
    if not root:
        return rel
    return root + rel if root.endswith("/") else root + "/" + rel


def _stat(path):
    try:
        return os.stat(path)
    except OSError:
        return None


def _is_dir(path):
    st = _stat(path)
    return st is not None and st[0] & 0x4000 != 0


def _uint(x):
    """ROMFS's unsigned integer: 7 bits a byte, most significant first."""
    n = _uint_len(x)
    out = bytearray(n)
    for i in range(n - 1, -1, -1):
        out[i] = (x & 0x7F) | (0x80 if i < n - 1 else 0)
        x >>= 7
    return out


def _uint_len(x):
    n = 1
    while x >= 0x80:
        x >>= 7
        n += 1
    return n


def _entries(path):
    """Sorted [(name, is_dir, size)] of a directory (a saved image is not code)."""
    out = []
    for name in sorted(os.listdir(path)):
        if name.startswith(IMAGE):
            continue
        st = os.stat(path + "/" + name)
        d = st[0] & 0x4000 != 0
        out.append((name, d, 0 if d else st[6]))
    return out


def _record_len(payload):
    return 1 + _uint_len(payload) + payload


def _tree_len(path, sizes=None):
    """Bytes of the records of every entry under path; each subdirectory's own into
    sizes[its path], when given (the writer needs them before its contents)."""
    total = 0
    for name, d, size in _entries(path):
        head = _uint_len(len(name)) + len(name)
        if d:
            sub = _tree_len(path + "/" + name, sizes)
            if sizes is not None:
                sizes[path + "/" + name] = sub
            total += _record_len(head + sub)
        else:
            total += _record_len(head + _record_len(size))
    return total


def _image_header(data):
    """The image's header for data bytes of records: the whole padded to an even length
    by a 0x80 before the length (as mpremote's writer does)."""
    pad = (len(HEADER) + _uint_len(data) + data) & 1
    return HEADER + (b"\x80" if pad else b"") + _uint(data)


def image_len(path):
    """Bytes of the ROMFS image of the tree at path."""
    data = _tree_len(path)
    return len(_image_header(data)) + data


class _Out:
    """Bytes written front to back into the partition, a block at a time."""

    def __init__(self, rom):
        self.rom = rom
        self.buf = bytearray(_BLOCK)
        self.fill = 0
        self.off = 0  # partition offset of buf[0]

    def write(self, data):
        mv = memoryview(data)
        i = 0
        while i < len(mv):
            k = min(len(mv) - i, _BLOCK - self.fill)
            self.buf[self.fill:self.fill + k] = mv[i:i + k]
            self.fill += k
            i += k
            if self.fill == _BLOCK:
                self.flush()

    def flush(self):
        if self.fill:
            self.rom(4, 0, self.off, memoryview(self.buf)[:self.fill])
            self.off += self.fill
            self.fill = 0


def _write_tree(out, path, sizes):
    for name, d, size in _entries(path):
        head = _uint(len(name)) + name.encode()
        if d:
            sub = sizes[path + "/" + name]
            out.write(_uint(_DIRECTORY) + _uint(len(head) + sub) + head)
            _write_tree(out, path + "/" + name, sizes)
        else:
            out.write(_uint(_FILE) + _uint(len(head) + _record_len(size)) + head)
            out.write(_uint(_VERBATIM) + _uint(size))
            _copy(out, path + "/" + name)


def _copy(out, path):
    """The bytes of the file at path into out, 512 at a time."""
    with open(path, "rb") as f:
        piece = bytearray(512)
        while True:
            n = f.readinto(piece)
            if not n:
                break
            out.write(memoryview(piece)[:n])


def write_tree(rom, path):
    """Erase the partition and write the tree at path into it as a ROMFS image (the bytes
    mpremote's writer makes of the same tree). ``rom`` is ``vfs.rom_ioctl``. -> bytes."""
    sizes = {}
    data = _tree_len(path, sizes)  # one walk of the tree for every directory's size
    head = _image_header(data)
    total = len(head) + data
    _prepare(rom, total)
    out = _Out(rom)
    out.write(head)
    _write_tree(out, path, sizes)
    out.flush()
    rom(5, 0)
    return total


def write_file(rom, path):
    """Erase the partition and copy a saved image file into it. -> bytes."""
    size = os.stat(path)[6]
    _prepare(rom, size)
    out = _Out(rom)
    _copy(out, path)
    out.flush()
    rom(5, 0)
    return size


def _prepare(rom, size):
    part = rom(2, 0)
    if size > len(part):
        raise OSError("the code (%d bytes) does not fit the %d-byte ROMFS partition"
                      % (size, len(part)))
    r = rom(3, 0, size)
    if isinstance(r, int) and r < 0:
        raise OSError("the ROMFS partition cannot be erased (%d)" % r)


def held_len(part):
    """Bytes of the ROMFS image at the start of a partition's memory, 0 when none."""
    if len(part) < 5 or bytes(part[:3]) != HEADER:
        return 0
    i = 3
    if part[i] == 0x80:  # the padding byte
        i += 1
    x = 0
    while i < len(part):
        c = part[i]
        i += 1
        x = x << 7 | (c & 0x7F)
        if c < 0x80:
            break
    return i + x if i + x <= len(part) else 0


def save_image(rom, dst):
    """Copy the image the partition holds into the file dst. -> bytes (0: none there)."""
    part = rom(2, 0)
    n = held_len(part)
    if not n:
        return 0
    tmp = dst + ".new"
    with open(tmp, "wb") as f:
        for o in range(0, n, 512):
            f.write(part[o:min(o + 512, n)])
    os.rename(tmp, dst)
    return n


def read_marker(root=""):
    """The slot whose code the partition holds; "" when unknown (a write was cut short);
    None when there is no marker: the partition is not roost's to write."""
    try:
        with open(_path(root, MARKER)) as f:
            m = json.loads(f.read(128))
    except OSError:
        return None
    except ValueError:
        return ""
    return m if m in ("a", "b") else ""


def write_marker(root, slot):
    """Say which slot the partition holds ("": a write in progress, unknown)."""
    path = _path(root, MARKER)
    with open(path + ".new", "w") as f:
        f.write(json.dumps(slot))
    try:
        os.rename(path + ".new", path)
    except OSError:  # a filesystem whose rename does not replace: remove, then rename
        os.remove(path)
        os.rename(path + ".new", path)


def _rom_ioctl():
    try:
        import vfs
    except ImportError:
        return None
    rom = getattr(vfs, "rom_ioctl", None)
    try:
        if rom is None or rom(1) < 1:
            return None
    except OSError:
        return None
    return rom


def ensure(root, slot, rom=None):
    """Make the ROMFS partition hold the code of slot. -> (what, note):
    "none"  no ROMFS partition, or no code for the slot anywhere but on the filesystem's
            own slot directory: the code is imported from slots/<slot> as on any board
    "rom"   the partition holds the slot's code: import it from /rom
    "reset" the partition was just written: reset, so the firmware mounts it
    note is "" or one line for the console."""
    held = read_marker(root)
    if held is None:  # not flashed with --romfs: the partition may hold someone else's files
        return "none", ""
    rom = rom or _rom_ioctl()
    if rom is None:
        return "none", ""
    sdir = _path(root, "slots/" + slot)
    code = sdir + "/roost"
    saved = sdir + "/" + IMAGE
    if held == slot:
        return "rom", ""
    if _is_dir(code):
        tree = True
    elif _stat(saved) is not None:
        tree = False
    else:  # nothing to write: whatever the partition holds is this slot's code
        return ("rom" if held_len(rom(2, 0)) else "none"), ""
    if held:  # keep the outgoing slot's code when the partition is its only copy
        hdir = _path(root, "slots/" + held)
        if not _is_dir(hdir + "/roost") and _stat(hdir + "/" + IMAGE) is None:
            if not _is_dir(hdir):  # flashed with --romfs: the slot has no directory yet
                os.mkdir(hdir)
            save_image(rom, hdir + "/" + IMAGE)
    write_marker(root, "")
    try:
        import vfs

        vfs.umount("/rom")
    except (ImportError, OSError, AttributeError):
        pass
    n = write_tree(rom, sdir) if tree else write_file(rom, saved)
    write_marker(root, slot)
    return "reset", "roost: the code of slot %s is now in the ROMFS partition (%d bytes); " \
                    "resetting" % (slot, n)
