"""A node's durable state in one directory: its "flash".

One file per key, holding the key's JSON value. A write goes to ``<name>.t`` first and is
then renamed over ``<name>.j``: rename is atomic on POSIX file systems and on littlefs, so a
pulled plug (``kill -9``, a power cut on a board) leaves either the old or the new value,
never a torn one. On CPython the new file and then the directory are also fsync'ed (with
``sync=True``), so the write survives a power cut of the machine, not only a killed process;
MicroPython has no ``os.fsync`` and littlefs commits on close and rename.

Only ``open``, ``os.rename``, ``os.remove``, ``os.listdir`` and ``os.mkdir`` are used, so the
same code runs on a laptop and on a board.

    st = DirStorage("/flash/roost")
    state = st.load_all()         # {key: value}: what a core's constructor reads
    st.put("promised", [3, "n2"]) # durable when it returns
    st.put("a/17", None)          # None deletes
    st.stage("a/1", v); st.stage("promised", b); st.commit()   # each durable, in order

The node runtime uses it on MicroPython (no index in RAM: a board's heap does not fragment
around one); on CPython it uses ``roost.node.logstore.LogStorage``, one append-only log per
node with one write per step.
"""

import json
import os

from roost.common.jsonpieces import write_json

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MAX_KEY_LEN = const(100)  # a key's encoded name stays far below littlefs's 255-byte limit
_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_HEX = "0123456789abcdef"
_DONE = ".j"  # a committed value
_TEMP = ".t"  # a write in progress (removed at start-up if a crash left one, unless whole
# and alone: see DirStorage.__init__)

_fsync = getattr(os, "fsync", None)


class StorageError(Exception):
    """A value on disk cannot be read (only possible if something else wrote the directory)."""


def sync_dir(path):
    """fsync a directory so a rename in it is durable (a no-op where that cannot be done)."""
    if _fsync is None:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except (AttributeError, OSError):
        return
    try:
        _fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def key_to_name(key):
    """A key ("promised", "a/17") -> a safe file name stem; ValueError for a bad key."""
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_LEN:
        raise ValueError("storage keys are non-empty strings of at most 100 characters")
    out = []
    for ch in key:
        if ch in _SAFE:
            out.append(ch)
        else:
            for b in ch.encode():
                out.append("%" + _HEX[b >> 4] + _HEX[b & 15])
    return "".join(out)


def name_to_key(stem):
    """The inverse of ``key_to_name``; None for a name this module did not make."""
    raw = bytearray()
    i = 0
    n = len(stem)
    while i < n:
        ch = stem[i]
        if ch == "%":
            if i + 3 > n:
                return None
            hi = _HEX.find(stem[i + 1])
            lo = _HEX.find(stem[i + 2])
            if hi < 0 or lo < 0:
                return None
            raw.append(hi * 16 + lo)
            i += 3
        elif ch in _SAFE:
            raw.extend(ch.encode())
            i += 1
        else:
            return None
    try:
        key = bytes(raw).decode()
    except Exception:  # not UTF-8: not one of ours
        return None
    return key or None


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _makedirs(path):
    parts = path.split("/")
    cur = ""
    for i, part in enumerate(parts):
        if i == 0 and part == "":
            cur = "/"
            continue
        cur = cur + part if cur.endswith("/") or cur == "" else cur + "/" + part
        if part and not _exists(cur):
            try:
                os.mkdir(cur)
            except OSError:
                if not _exists(cur):
                    raise


class DirStorage:
    """Durable ``{key: JSON value}`` in one directory, a file per key written by
    write-new-then-rename (``<name>.t`` renamed over ``<name>.j``). The default on MicroPython:
    it holds no index in RAM, so a board's heap does not fragment around one."""

    def __init__(self, path, sync=True):
        if not isinstance(path, str) or not path:
            raise ValueError("storage needs a directory path")
        self.path = path.rstrip("/") or "/"
        self.sync = sync and _fsync is not None
        self.stats = {"puts": 0, "deletes": 0, "temp_removed": 0, "temp_promoted": 0,
                      "commits": 0}
        self._pending = []
        _makedirs(self.path)
        names = os.listdir(self.path)
        for fname in names:
            if fname.endswith(_TEMP):
                done = fname[: -len(_TEMP)] + _DONE
                if done not in names and self._whole(fname):
                    # a rename that removes its target first (FAT) was cut between the two:
                    # the new value, written whole, is the only one left
                    os.rename(self._join(fname), self._join(done))
                    self.stats["temp_promoted"] += 1
                    continue
                os.remove(self._join(fname))
                self.stats["temp_removed"] += 1

    def _join(self, fname):
        return self.path + "/" + fname

    def _whole(self, fname):
        """A value file written to its end: JSON, then the newline _put writes last."""
        try:
            with open(self._join(fname)) as f:
                json.load(f)
                f.seek(0, 2)
                end = f.tell()
                f.seek(end - 1)
                return end > 1 and f.read(1) == "\n"
        except (OSError, ValueError):
            return False

    def _file(self, key):
        return self._join(key_to_name(key) + _DONE)

    def get(self, key, default=None):
        """The value stored under key, or default."""
        try:
            f = open(self._file(key))
        except OSError:
            return default
        try:
            return json.load(f)  # parsed from the file: no copy of the whole text in RAM
        except ValueError:
            raise StorageError("unreadable value for key " + key) from None
        finally:
            f.close()

    def put(self, key, value):
        """Store value (any JSON value) under key, durably; None deletes the key."""
        self.stage(key, value)
        self.commit()

    def _put(self, key, value):
        final = self._file(key)
        if value is None:
            try:
                os.remove(final)
            except OSError:
                return
            self.stats["deletes"] += 1
            self._sync_dir()
            return
        temp = final[: -len(_DONE)] + _TEMP
        with open(temp, "w") as f:
            write_json(f, value)
            f.write("\n")  # its end: a .t file ending here was written whole
            if self.sync:
                f.flush()
                _fsync(f.fileno())
        os.rename(temp, final)
        self.stats["puts"] += 1
        self._sync_dir()

    def _sync_dir(self):
        if self.sync:
            sync_dir(self.path)

    def stage(self, key, value):
        """Queue a write; done (each durably, in order) by ``commit()``."""
        key_to_name(key)
        self._pending.append((key, value))

    def commit(self):
        recs = self._pending
        self._pending = []
        for key, value in recs:
            self._put(key, value)
        if recs:
            self.stats["commits"] += 1
        return len(recs)

    def pending(self):
        return len(self._pending)

    def close(self):
        self.commit()

    def keys(self):
        """Every stored key, sorted."""
        out = []
        for fname in os.listdir(self.path):
            if fname.endswith(_DONE):
                key = name_to_key(fname[: -len(_DONE)])
                if key is not None:
                    out.append(key)
        out.sort()
        return out

    def items(self):
        """Sorted ``[(key, value)]``."""
        return [(k, self.get(k)) for k in self.keys()]

    def load_all(self):
        """``{key: value}`` of everything stored."""
        out = {}
        for k in self.keys():
            v = self.get(k)
            if v is not None:
                out[k] = v
        return out

    def boot_state(self):
        """What a core's constructor reads at boot: a read-only mapping that reads each
        value from flash when asked, so a board never holds the whole log window parsed
        at once (on a fragmented heap that was the difference between booting and not)."""
        return LazyState(self, self.keys())


class LazyState:
    """Stored keys, each value read from its file on ``get``: ``get``, ``pop`` (hides a key),
    iteration, ``in`` and ``len``, which is all the cores use of their storage at boot."""

    def __init__(self, storage, keys):
        self._st = storage
        self._keys = dict.fromkeys(keys)  # "in" and pop without a scan (cores sort keys)

    def get(self, key, default=None):
        if key not in self._keys:
            return default
        v = self._st.get(key)
        return default if v is None else v

    def pop(self, key, default=None):
        v = self.get(key, default)
        self._keys.pop(key, None)
        return v

    def __iter__(self):
        return iter(self._keys)

    def __contains__(self, key):
        return key in self._keys

    def __len__(self):
        return len(self._keys)


FileStorage = DirStorage  # the one-file-per-key layout (logstore.LogStorage is the log)
