"""A node's durable state in one directory: its "flash", kept as an append-only log.

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

    st = DirStorage("/flash/roost")
    state = st.load_all()         # {key: value}: what a core's constructor reads
    st.put("promised", [3, "n2"]) # durable when it returns
    st.stage("a/17", [3, "n2", v]); st.stage("promised", [3, "n2"]); st.commit()  # one write
    st.put("a/17", None)          # None deletes
"""

import binascii
import json
import os

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MAX_KEY_LEN = const(100)  # a key's encoded name stays far below littlefs's 255-byte limit
_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_HEX = "0123456789abcdef"
_DONE = ".j"  # the former layout: a committed value per file (imported, then removed)
_TEMP = ".t"  # the former layout: a write in progress (removed at start-up)
_LOG = "log"
_NEW = "log.n"  # a compaction in progress (removed at start-up if a crash left one)
_COMPACT_MIN = const(65536)  # never compact a log smaller than this (bytes)
_COMPACT_RATIO = const(4)  # compact when the log is this many times its live records

_fsync = getattr(os, "fsync", None)


class StorageError(Exception):
    """A value on disk cannot be read (only possible if something else wrote the directory)."""


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


def encode_record(key, value):
    """One log line (bytes): checksum, space, JSON [key, value], newline."""
    body = json.dumps([key, value]).encode()
    return ("%08x " % (binascii.crc32(body) & 0xFFFFFFFF)).encode() + body + b"\n"


def decode_record(line):
    """A log line without its newline -> (key, value), or None if torn or not ours."""
    if len(line) < 12 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return None
    if binascii.crc32(body) & 0xFFFFFFFF != crc:
        return None
    try:
        rec = json.loads(body)
    except ValueError:
        return None
    if not isinstance(rec, list) or len(rec) != 2 or not isinstance(rec[0], str):
        return None
    return rec[0], rec[1]


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


def _record_key(line):
    """A log line without its newline -> (key, deleted) if its checksum holds, else None.

    Reads the key without decoding the value (a snapshot record can be tens of KB)."""
    if len(line) < 12 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return None
    if binascii.crc32(body) & 0xFFFFFFFF != crc or body[:2] != b'["':
        return None
    i = 2
    n = len(body)
    while i < n:
        c = body[i]
        if c == 92:  # backslash: skip the escaped character
            i += 2
            continue
        if c == 34:  # the key's closing quote
            break
        i += 1
    if i >= n:
        return None
    try:
        key = json.loads(body[1:i + 1])
    except ValueError:
        return None
    return key, body[i + 1:] in (b", null]", b",null]")


def _scan(path, index):
    """Read the log at path into index {key: (offset, length)}; -> (good_bytes, torn).

    Stops at the first bad record (short line or bad checksum): torn is True then. A bad
    record followed by a good one is not a torn write but damage: StorageError."""
    try:
        f = open(path, "rb")
    except OSError:
        return 0, False
    pos = 0
    try:
        while True:
            line = f.readline()
            if not line:
                return pos, False
            n = len(line)
            rec = _record_key(line[:-1]) if line[n - 1] == 10 else None
            if rec is None:
                while True:  # anything good after it?
                    more = f.readline()
                    if not more:
                        return pos, True
                    if more[len(more) - 1] == 10 and _record_key(more[:-1]) is not None:
                        raise StorageError("damaged record in the middle of the log")
            if rec[1]:
                index.pop(rec[0], None)
            else:
                index[rec[0]] = (pos, n)
            pos += n
    finally:
        f.close()


class DirStorage:
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
        rec = decode_record(line[:-1]) if line.endswith(b"\n") else None
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

    # -------------------------------------------------------- writing

    def stage(self, key, value):
        """Queue a write (None deletes); durable only once ``commit()`` returns."""
        key_to_name(key)  # the same key rules as ever (ValueError for a bad key)
        self._pending.append(encode_record(key, value))
        self._pending_keys.append((key, value is None))

    def commit(self):
        """Write every staged record with one write (and one fsync when sync); -> count."""
        recs = self._pending
        if not recs:
            return 0
        keys = self._pending_keys
        self._pending = []
        self._pending_keys = []
        data = recs[0] if len(recs) == 1 else b"".join(recs)
        f = self._f
        created = False
        if f is None:
            created = not _exists(self._log)
            f = self._f = open(self._log, "ab")
        f.write(data)
        f.flush()
        if self.sync:
            _fsync(f.fileno())
            if created:
                self._sync_dir()
        off = self._size
        index = self._index
        for i in range(len(recs)):
            n = len(recs[i])
            key, deleted = keys[i]
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
        return len(recs)

    def put(self, key, value):
        """Store value (any JSON value) under key, durably; None deletes the key."""
        self.stage(key, value)
        self.commit()

    def pending(self):
        """How many staged records wait for ``commit()``."""
        return len(self._pending)

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
        if not self.sync:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except (AttributeError, OSError):
            return
        try:
            _fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
