"""A node's durable state in one directory as an append-only log (the CPython runtime's
storage; ``storage.DirStorage``, a file per key, is the one on MicroPython).

The directory holds one file, ``log``: one record per line,

    <crc32 of the JSON, 8 hex digits> <JSON [key, value]>\\n      (value null: key deleted)

A write appends records and flushes them; ``stage()`` + ``commit()`` put all the records of
one step (or of several datagrams handled together) into ONE ``write`` (and one fsync with
``sync=True``), so a node pays one durable write per step rather than one file per key.

Recovery reads the log from the start; the last record of a key wins. A record whose line
is cut short or whose checksum does not match ends the log: a pulled plug (``kill -9``, a
power cut) can only tear the record being written, so that record and anything after it
are dropped, never half a value. A torn tail is removed at start-up by rewriting the log
(so later appends never land after garbage).

The log is compacted when it holds much more than the live values (e.g. after a Paxos
snapshot deletes the slots it covers): the live records are copied into ``log.n``, which is
then renamed over ``log`` (rename is atomic on POSIX and on littlefs). A ``log.n`` left by a
crash is removed at start-up. With ``sync=True`` (CPython) the file and, after a rename or
the file's creation, the directory are fsync'ed, so a write also survives a power cut of the
machine; MicroPython has no ``os.fsync`` and littlefs commits on close and rename.

RAM: only an index ``{key: (offset, length)}`` of the live records is kept; values are read
back from the file when asked for (at boot, in practice), so a board never holds its state
twice. A directory written by the former one-file-per-key layout (``<name>.j``) is imported
into the log at start-up, then those files are removed.

Only ``open``, ``os.rename``, ``os.remove``, ``os.listdir``, ``os.stat`` and ``os.mkdir`` are
used, so the same code runs on a laptop and on a board.

    st = LogStorage("/flash/roost")
    state = st.load_all()         # {key: value}: what a core's constructor reads
    st.put("promised", [3, "n2"]) # durable when it returns
    st.stage("a/17", [3, "n2", v]); st.stage("promised", [3, "n2"]); st.commit()  # one write
    st.put("a/17", None)          # None deletes
"""

import binascii
import json
import os
import sys

from roost.common.jsoncodec import dumps, loads
from roost.node.storage import (
    StorageError,
    _exists,
    _makedirs,
    key_to_name,
    name_to_key,
    sync_dir,
)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


MICROPYTHON = sys.implementation.name == "micropython"
_DONE = ".j"  # the former layout: a committed value per file (imported, then removed)
_TEMP = ".t"  # the former layout: a write in progress (removed at start-up)
_LOG = "log"
_NEW = "log.n"  # a compaction in progress (removed at start-up if a crash left one)
# compact when the log is over this many bytes and this many times its live records (a
# board reads the whole log into one buffer at start-up: keep it small there)
_COMPACT_MIN = 8192 if MICROPYTHON else 65536
_COMPACT_RATIO = 2 if MICROPYTHON else 4

_fsync = getattr(os, "fsync", None)


def _encode(key, value):
    """(header, body) of one log record: the line is header + body + newline. Kept in two
    pieces so a board never copies a large value (a snapshot) into one more buffer."""
    body = dumps([key, value]).encode()
    return ("%08x " % (binascii.crc32(body) & 0xFFFFFFFF)).encode(), body


def encode_record(key, value):
    """One log line (bytes): checksum, space, JSON [key, value], newline."""
    h, body = _encode(key, value)
    return h + body + b"\n"


def _checked_body(line, n):
    """The record's body (a memoryview of line[9:n]) if its crc32 header holds, else None."""
    mv = memoryview(line)
    try:
        crc = int(bytes(mv[:8]), 16)
    except ValueError:
        return None
    body = mv[9:n]
    if binascii.crc32(body) & 0xFFFFFFFF != crc:
        return None
    return body


def decode_record(line):
    """A log line (its newline optional) -> (key, value), or None if torn or not ours."""
    n = len(line)
    if n and line[n - 1] == 10:
        n -= 1
    if n < 12 or line[8] != 32:
        return None
    body = _checked_body(line, n)
    if body is None:
        return None
    try:
        rec = loads(body if MICROPYTHON else bytes(body))
    except ValueError:
        return None
    if not isinstance(rec, list) or len(rec) != 2 or not isinstance(rec[0], str):
        return None
    return rec[0], rec[1]


def _record_key(line):
    """A log line (with its newline) -> (key, deleted) if whole and its checksum holds,
    else None. Reads the key without decoding or copying the value (a snapshot record can
    be tens of KB)."""
    n = len(line) - 1
    if n < 12 or line[n] != 10 or line[8] != 32 or line[9] != 91 or line[10] != 34:
        return None
    if _checked_body(line, n) is None:
        return None
    mv = memoryview(line)
    i = 11
    while i < n:
        c = line[i]
        if c == 92:  # backslash: skip the escaped character
            i += 2
            continue
        if c == 34:  # the key's closing quote
            break
        i += 1
    if i >= n:
        return None
    try:
        key = loads(bytes(mv[10:i + 1]))
    except ValueError:
        return None
    rest = n - i - 1
    deleted = rest <= 7 and bytes(mv[i + 1:n]) in (b", null]", b",null]")
    return key, deleted


def _scan(path, index):
    """Read the log at path into index {key: (offset, length)}; -> (good_bytes, torn).

    Stops at the first bad record (short line or bad checksum): torn is True then. A bad
    record followed by a good one is not a torn write but damage: StorageError.
    The file is read with ONE allocation and cut with memoryviews: on a board, line buffers
    growing between the index's small objects would fragment the heap for good."""
    try:
        f = open(path, "rb")
    except OSError:
        return 0, False
    try:
        size = os.stat(path)[6]
        data = bytearray(size)  # one allocation of exactly the file's size
        got = f.readinto(data)
        if got is not None and got < size:
            data = data[:got]
    finally:
        f.close()
    mv = memoryview(data)
    size = len(data)
    pos = 0
    while pos < size:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return pos, True  # bytes without a newline: a torn last record
        rec = _record_key(mv[pos:nl + 1])
        if rec is None:
            start = nl + 1
            while start < size:  # anything good after it?
                e = data.find(b"\n", start)
                if e < 0:
                    break
                if _record_key(mv[start:e + 1]) is not None:
                    raise StorageError("damaged record in the middle of the log")
                start = e + 1
            return pos, True
        if rec[1]:
            index.pop(rec[0], None)
        else:
            index[rec[0]] = (pos, nl + 1 - pos)
        pos = nl + 1
    return pos, False


class LogStorage:
    """Durable ``{key: JSON value}`` in one directory, as an append-only checksummed log."""

    def __init__(self, path, sync=True):
        if not isinstance(path, str) or not path:
            raise ValueError("storage needs a directory path")
        self.path = path.rstrip("/") or "/"
        self.sync = sync and _fsync is not None
        self.stats = {"puts": 0, "deletes": 0, "temp_removed": 0, "commits": 0,
                      "torn_dropped": 0, "compactions": 0, "imported": 0}
        self._index = {}  # key -> (offset, length) of its live record in the log
        self._live = 0  # bytes of live records
        self._pending = []  # staged records (bytes), written by the next commit()
        self._pending_keys = []
        self._f = None  # the log, open for appending
        _makedirs(self.path)
        self._log = self._join(_LOG)
        legacy = []
        for fname in os.listdir(self.path):
            if fname.endswith(_TEMP) or fname == _NEW:
                os.remove(self._join(fname))
                self.stats["temp_removed"] += 1
            elif fname.endswith(_DONE):
                legacy.append(fname)
        size, torn = _scan(self._log, self._index)
        self._size = size
        for k in self._index:
            self._live += self._index[k][1]
        if torn:
            self.stats["torn_dropped"] += 1
            self._compact()  # rewrite without the torn tail: later appends follow good data
        if legacy:
            self._import(sorted(legacy))

    def _join(self, fname):
        return self.path + "/" + fname

    # -------------------------------------------------------- reading

    def get(self, key, default=None):
        """The value stored under key (staged writes included), or default."""
        if self._pending:
            self.commit()
        if not isinstance(key, str):
            return default
        loc = self._index.get(key)
        if loc is None:
            return default
        with open(self._log, "rb") as f:
            return self._read_at(f, key, loc)

    def _read_at(self, f, key, loc):
        f.seek(loc[0])
        line = f.read(loc[1])
        rec = decode_record(line) if line.endswith(b"\n") else None
        if rec is None or rec[0] != key:
            raise StorageError("unreadable value for key " + key)
        return rec[1]

    def keys(self):
        """Every stored key, sorted."""
        if self._pending:
            self.commit()
        out = list(self._index)
        out.sort()
        return out

    def items(self):
        """Sorted ``[(key, value)]``."""
        keys = self.keys()
        if not keys:
            return []
        out = []
        with open(self._log, "rb") as f:
            for k in keys:
                out.append((k, self._read_at(f, k, self._index[k])))
        return out

    def load_all(self):
        """``{key: value}`` of everything stored: what a core's constructor reads at boot."""
        out = {}
        for k, v in self.items():
            out[k] = v
        return out

    boot_state = load_all  # a Pi has the RAM (DirStorage reads a board's lazily)

    # -------------------------------------------------------- writing

    def stage(self, key, value):
        """Queue a write (None deletes); durable only once ``commit()`` returns."""
        key_to_name(key)  # the same key rules as ever (ValueError for a bad key)
        h, body = _encode(key, value)
        rec = (key, value is None, len(h) + len(body) + 1)
        self._pending += (h, body)  # header and body together, or neither (a MemoryError)
        self._pending_keys.append(rec)

    def _truncate_to_size(self):
        f = self._f
        self._f = None
        try:
            if f is not None:
                f.close()
        except (OSError, ValueError):
            pass
        try:
            with open(self._log, "ab") as g:
                g.truncate(self._size)
        except (OSError, AttributeError):  # MicroPython files have no truncate: the torn
            pass  # tail is then dropped at the next start, as after a crash

    def commit(self):
        """Write every staged record with one write (and one fsync when sync); -> count."""
        recs = self._pending
        if not recs:
            return 0
        keys = self._pending_keys
        self._pending = []
        self._pending_keys = []
        f = self._f
        created = False
        if f is None:
            created = not _exists(self._log)
            f = self._f = open(self._log, "ab")
        try:
            if MICROPYTHON:  # no buffer the size of everything: piece by piece (a torn
                for i in range(0, len(recs), 2):  # tail is dropped at start-up all the same)
                    f.write(recs[i])
                    f.write(recs[i + 1])
                    f.write(b"\n")
            else:  # one write call
                parts = []
                for i in range(0, len(recs), 2):
                    parts.append(recs[i])
                    parts.append(recs[i + 1])
                    parts.append(b"\n")
                f.write(b"".join(parts))
            f.flush()
            if self.sync:
                _fsync(f.fileno())
                if created:
                    self._sync_dir()
        except BaseException:  # a write cut short: the file ends where the index does, so a
            self._truncate_to_size()  # later append never follows half a record
            raise
        off = self._size
        index = self._index
        for key, deleted, n in keys:
            old = index.get(key)
            if old is not None:
                self._live -= old[1]
            if deleted:
                if old is not None:
                    del index[key]
                    self.stats["deletes"] += 1
            else:
                index[key] = (off, n)
                self._live += n
                self.stats["puts"] += 1
            off += n
        self._size = off
        self.stats["commits"] += 1
        if self._size > _COMPACT_MIN and self._size > _COMPACT_RATIO * self._live:
            self._compact()
        return len(keys)

    def put(self, key, value):
        """Store value (any JSON value) under key, durably; None deletes the key."""
        self.stage(key, value)
        self.commit()

    def pending(self):
        """How many staged records wait for ``commit()``."""
        return len(self._pending_keys)

    def close(self):
        """Commit what is staged and close the log file."""
        self.commit()
        if self._f is not None:
            self._f.close()
            self._f = None

    # -------------------------------------------------------- compaction, import

    def _compact(self):
        """Copy the live records into log.n, then rename it over log."""
        if self._f is not None:
            self._f.close()
            self._f = None
        new = self._join(_NEW)
        index = {}
        off = 0
        keys = sorted(self._index)
        src = open(self._log, "rb") if keys else None
        try:
            with open(new, "wb") as out:
                for k in keys:
                    loc = self._index[k]
                    src.seek(loc[0])
                    line = src.read(loc[1])
                    out.write(line)
                    index[k] = (off, loc[1])
                    off += loc[1]
                out.flush()
                if self.sync:
                    _fsync(out.fileno())
        finally:
            if src is not None:
                src.close()
        os.rename(new, self._log)
        self._sync_dir()
        self._index = index
        self._size = off
        self._live = off
        self.stats["compactions"] += 1

    def _import(self, names):
        """Bring the former one-file-per-key layout into the log, then remove its files."""
        for fname in names:
            key = name_to_key(fname[: -len(_DONE)])
            if key is None:
                continue
            with open(self._join(fname)) as f:
                data = f.read()
            try:
                value = json.loads(data)
            except ValueError:
                raise StorageError("unreadable value for key " + key) from None
            self.stage(key, value)
        saved = self.sync
        self.sync = _fsync is not None  # the import is durable before the old files go
        try:
            self.stats["imported"] = self.commit()
        finally:
            self.sync = saved
        for fname in names:
            os.remove(self._join(fname))
        self._sync_dir()

    def _sync_dir(self):
        if self.sync:
            sync_dir(self.path)
