"""Over-the-air update of a board's node code: signed bundle, staged beside the running copy,
switched atomically, rolled back if the new code does not rejoin in time. MicroPython-safe.

Sans-I/O apart from the board's own flash (a directory ``root``): the MQTT side hands the
pieces over as they arrive and carries out nothing else.

A bundle is a manifest plus the files it names. The manifest is JSON::

    {"format": 1, "board": "esp32", "serial": 7, "version": "0.1.0+7",
     "files": [["roost/common/prng.mpy", 2210, "<sha256 hex>"], ...]}

and its tag is HMAC-SHA256 with the fleet key over ``b"roost-ota-1\\n" + manifest``.
``OtaStager.begin`` checks the tag, the paths (relative, no '..'), the sizes and that the
serial is newer than the running one (an old signed bundle replayed is refused); ``write``
takes each file's bytes in order, hashing as it goes; ``finish`` checks every hash, renames
the staging directory into the idle slot and switches ``slots/state.json`` to it with trial
boots. The board then resets; ``confirm`` once it has joined; ``JoinWatch`` says when the
deadline passed, and ``rollback`` switches back. Refusals are counted in ``stats`` and
returned as a reason; nothing here raises on remote data.
"""

import hashlib
import json
import os
from binascii import hexlify

from roost.common.auth import Hmac
from roost.firmware import bootsel

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


FORMAT = 1
DOMAIN = b"roost-ota-1\n"  # tag domain: an OTA tag can never pass for an envelope tag
TRIAL_BOOTS = 2  # boots an unconfirmed update gets (one reset by the watchdog is forgiven)
_MAX_MANIFEST = const(16384)  # bytes
_MAX_FILES = const(200)
_MAX_FILE = const(262144)  # bytes per file
_MAX_TOTAL = const(1048576)  # bytes per bundle: an ESP32 has 1.4-2 MB of flash for files
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./"
STAGING = "slots/staging"


def _join(root, rel):
    if not root:
        return rel
    return root + rel if root.endswith("/") else root + "/" + rel


def _is_dir(path):
    try:
        return (os.stat(path)[0] & 0x4000) != 0
    except OSError:
        return False


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def rmtree(path):
    """Remove a file or a directory tree (MicroPython has no shutil). Bounded by the tree."""
    if not _exists(path):
        return
    if not _is_dir(path):
        os.remove(path)
        return
    for name in os.listdir(path):
        rmtree(path + "/" + name)
    os.rmdir(path)


def makedirs(path):
    parts = path.split("/")
    cur = ""
    for i, part in enumerate(parts):
        if not part:
            if i == 0:
                cur = "/"
            continue
        cur = cur + part if (not cur or cur.endswith("/")) else cur + "/" + part
        if not _is_dir(cur):
            os.mkdir(cur)


def check_path(p):
    """True for a relative path of plain names (no '..', no '//', no leading '/')."""
    if not isinstance(p, str) or not 0 < len(p) <= 120 or p[0] == "/" or p[-1] == "/":
        return False
    for ch in p:
        if ch not in _PATH_CHARS:
            return False
    for part in p.split("/"):
        if part in ("", ".", ".."):
            return False
    return True


def sign(key, manifest_bytes):
    """The tag for a manifest (the sender's side; ``key`` is the fleet key)."""
    return Hmac(key).tag(DOMAIN + manifest_bytes)


def make_manifest(files, serial, version, board="esp32"):
    """files: {path: bytes} -> manifest bytes (sorted, so the same files give the same bytes)."""
    rows = []
    for path in sorted(files):
        data = files[path]
        rows.append([path, len(data), hexlify(hashlib.sha256(data).digest()).decode()])
    return json.dumps(
        {"format": FORMAT, "board": board, "serial": serial, "version": version, "files": rows}
    ).encode()


def parse_manifest(raw):
    """bytes -> (dict, None) or (None, reason). Never raises."""
    if not isinstance(raw, (bytes, bytearray)) or not 0 < len(raw) <= _MAX_MANIFEST:
        return None, "too_large"
    try:
        m = json.loads(raw)
    except (ValueError, UnicodeError):
        return None, "malformed"
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        return None, "malformed"
    serial, version, files = m.get("serial"), m.get("version"), m.get("files")
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        return None, "malformed"
    if not isinstance(version, str) or len(version) > 64 or not isinstance(files, list):
        return None, "malformed"
    if not 0 < len(files) <= _MAX_FILES:
        return None, "malformed"
    total = 0
    seen = {}
    for row in files:
        if not isinstance(row, list) or len(row) != 3:
            return None, "malformed"
        path, size, digest = row
        if not check_path(path) or path in seen:
            return None, "bad_path"
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_FILE:
            return None, "too_large"
        if not isinstance(digest, str) or len(digest) != 64:
            return None, "malformed"
        seen[path] = 1
        total += size
    if total > _MAX_TOTAL:
        return None, "too_large"
    return m, None


class OtaStager:
    """Receives one update at a time into ``slots/staging`` and switches to it."""

    def __init__(self, root, key, board="esp32"):
        self.root = root
        self._hmac = Hmac(key)
        self.board = board
        self.stats = {}
        self._reset()

    def _reset(self):
        self._manifest = None
        self._index = 0  # which file is being received
        self._got = 0  # bytes of it so far
        self._hash = None
        self._file = None

    def _refuse(self, reason):
        self.stats["rx_rejected_" + reason] = self.stats.get("rx_rejected_" + reason, 0) + 1
        self.abort()
        return reason

    def abort(self):
        """Drop a half-received update; the running code is untouched."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        self._reset()
        try:
            rmtree(_join(self.root, STAGING))
        except OSError:
            pass

    @property
    def busy(self):
        return self._manifest is not None

    def begin(self, manifest_bytes, tag):
        """Start an update. Returns None, or the reason it was refused."""
        self.abort()
        if not isinstance(tag, (bytes, bytearray)) or not isinstance(
            manifest_bytes, (bytes, bytearray)
        ):
            return self._refuse("malformed")
        if len(manifest_bytes) > _MAX_MANIFEST:
            return self._refuse("too_large")
        if not self._hmac.verify(DOMAIN + bytes(manifest_bytes), tag):
            return self._refuse("bad_signature")
        m, why = parse_manifest(manifest_bytes)
        if why:
            return self._refuse(why)
        if m.get("board") != self.board:
            return self._refuse("wrong_board")
        st = bootsel.read_state(self.root)
        if m["serial"] <= st[3]:
            return self._refuse("stale")
        if st[2] != bootsel.CONFIRMED:  # the running update has not joined yet: its
            # previous slot is the last code known to work, and a switch would replace it
            return self._refuse("on_trial")
        staging = _join(self.root, STAGING)
        try:
            makedirs(staging)
        except OSError:
            return self._refuse("flash_error")
        self._manifest = m
        return self._open_next()

    def _open_next(self):
        files = self._manifest["files"]
        while self._index < len(files):
            path, size, _ = files[self._index]
            full = _join(self.root, STAGING + "/" + path)
            try:
                i = full.rfind("/")
                if i > 0:
                    makedirs(full[:i])
                self._file = open(full, "wb")
            except OSError:
                return self._refuse("flash_error")
            self._hash = hashlib.sha256()
            self._got = 0
            if size > 0:
                return None
            why = self._close_current()  # an empty file is complete at once
            if why:
                return why
        return None

    def _close_current(self):
        path, size, digest = self._manifest["files"][self._index]
        try:
            self._file.close()
        except OSError:
            return self._refuse("flash_error")
        self._file = None
        if self._got != size or hexlify(self._hash.digest()).decode() != digest:
            return self._refuse("hash_mismatch")
        self._index += 1
        return None

    def write(self, path, offset, chunk):
        """Bytes of the file being received, in order. Returns None or the refusal reason."""
        if self._manifest is None:
            self.stats["rx_rejected_not_started"] = self.stats.get("rx_rejected_not_started", 0) + 1
            return "not_started"
        files = self._manifest["files"]
        if self._index >= len(files) or path != files[self._index][0]:
            return self._refuse("unknown_file")
        if not isinstance(chunk, (bytes, bytearray)) or offset != self._got:
            return self._refuse("out_of_order")
        size = files[self._index][1]
        if self._got + len(chunk) > size:
            return self._refuse("hash_mismatch")
        try:
            self._file.write(chunk)
        except OSError:
            return self._refuse("flash_error")
        self._hash.update(chunk)
        self._got += len(chunk)
        if self._got == size:
            why = self._close_current()
            if why:
                return why
            return self._open_next()
        return None

    def finish(self):
        """All files in and hashed: move staging into the idle slot and switch to it.

        Returns None (the caller resets the board next) or the refusal reason.
        """
        if self._manifest is None:
            self.stats["rx_rejected_not_started"] = self.stats.get("rx_rejected_not_started", 0) + 1
            return "not_started"
        if self._index != len(self._manifest["files"]):
            return self._refuse("incomplete")
        st = bootsel.read_state(self.root)
        target = bootsel.other(st[0])
        dst = bootsel.slot_path(self.root, target)
        try:
            rmtree(dst)  # the copy before the running one: the running one stays as previous
            os.rename(_join(self.root, STAGING), dst)
            bootsel.write_state(
                self.root,
                [target, st[0], TRIAL_BOOTS, self._manifest["serial"], self._manifest["version"]],
            )
        except OSError:
            return self._refuse("flash_error")
        self.stats["ota_switched"] = self.stats.get("ota_switched", 0) + 1
        self._reset()
        return None


def apply(root, key, manifest_bytes, tag, files, board="esp32", chunk=512):
    """Run a whole update from memory (tests, the CLI): None or the refusal reason."""
    st = OtaStager(root, key, board)
    why = st.begin(manifest_bytes, tag)
    if why:
        return why
    m, _ = parse_manifest(manifest_bytes)
    for path, _size, _digest in m["files"]:
        data = files.get(path, b"")
        off = 0
        while True:
            piece = data[off:off + chunk]
            if not piece:
                break
            why = st.write(path, off, piece)
            if why:
                return why
            off += len(piece)
    return st.finish()


def in_trial(root=""):
    """True while the running slot is an update that has not yet reported "joined"."""
    return bootsel.read_state(root)[2] != bootsel.CONFIRMED


def confirm(root=""):
    """The new code joined: keep it. Returns True when something changed."""
    st = bootsel.read_state(root)
    if st[2] == bootsel.CONFIRMED:
        return False
    st[2] = bootsel.CONFIRMED
    bootsel.write_state(root, st)
    return True


def rollback(root=""):
    """Switch back to the previous slot (the caller resets). False when there is none."""
    st = bootsel.read_state(root)
    if not st[1]:
        return False
    bootsel.write_state(root, [st[1], st[0], bootsel.CONFIRMED, st[3], "rollback"])
    return True


class JoinWatch:
    """The "joined in time" deadline for a trial boot, driven by the caller's now_ms."""

    def __init__(self, start_ms, timeout_ms, active):
        self.deadline_ms = start_ms + timeout_ms if active else None
        self.joined = False

    def joined_at(self, now_ms):
        self.joined = True
        self.deadline_ms = None

    def expired(self, now_ms):
        return self.deadline_ms is not None and now_ms >= self.deadline_ms

    def next_deadline_ms(self):
        return self.deadline_ms
