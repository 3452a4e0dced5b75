"""JSON text written in pieces: a long list (a Paxos snapshot holds a whole store) never
becomes one string in RAM. Flash files and a laggard's snapshot copy are written this way
on a board, whose fragmented heap may hold the pieces but no single block of their size;
``load_pieces`` reads such text back from its pieces (a snapshot received in datagrams)."""

import binascii
import io
import json

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_PIECE = const(512)  # characters per write() (more when one leaf is longer)
_MAX_DEPTH = const(4)  # lists nested deeper are encoded whole


def write_json(f, value):
    """Write value as JSON through ``f.write(str)`` in pieces of about _PIECE characters:
    a few hundred writes, not one per token as ``json.dump`` makes on MicroPython."""
    pending = []
    _write_piece(f, value, 0, pending, [0])
    if pending:
        f.write("".join(pending))


def _write_piece(f, v, depth, pending, size):
    """v into pending (lists element by element down to _MAX_DEPTH); pending goes to f
    whenever it holds _PIECE characters (size[0] counts them)."""
    if not isinstance(v, list) or depth >= _MAX_DEPTH:
        piece = json.dumps(v)
        pending.append(piece)
        size[0] += len(piece)
        if size[0] >= _PIECE:
            f.write("".join(pending))
            del pending[:]
            size[0] = 0
        return
    pending.append("[")
    first = True
    for x in v:
        if not first:
            pending.append(",")
        first = False
        _write_piece(f, x, depth + 1, pending, size)
    pending.append("]")


class Pieces:
    """A file-like target for write_json that keeps the text as bytes pieces, with their
    total length and crc32 (a snapshot's copy for a laggard, sent in datagrams)."""

    __slots__ = ("parts", "total", "crc")

    def __init__(self):
        self.parts = []
        self.total = 0
        self.crc = 0

    def write(self, s):
        b = s.encode()
        self.parts.append(b)
        self.total += len(b)
        self.crc = binascii.crc32(b, self.crc) & 0xFFFFFFFF


def piece_slice(parts, off, n):
    """Up to n bytes of the pieces' concatenation, from offset off."""
    got = []
    k = 0
    for b in parts:
        if off >= len(b):
            off -= len(b)
            continue
        got.append(b[off:off + n - k])
        k += len(got[-1])
        off = 0
        if k >= n:
            break
    return b"".join(got)


class _PiecesReader(io.IOBase):
    """The pieces as one stream, for MicroPython's ``json.load`` (which reads a stream a
    few bytes at a time through ``readinto``)."""

    def __init__(self, parts):
        self.parts = parts
        self.i = 0  # the piece being read
        self.off = 0  # and the offset in it

    def readinto(self, buf):
        n = 0
        parts = self.parts
        while n < len(buf) and self.i < len(parts):
            b = parts[self.i]
            k = min(len(buf) - n, len(b) - self.off)
            buf[n:n + k] = b[self.off:self.off + k]
            n += k
            self.off += k
            if self.off >= len(b):
                self.i += 1
                self.off = 0
        return n

    def read(self, n=-1):  # CPython's json.load reads it whole (CPython has the room)
        rest = b"".join(self.parts[self.i:])[self.off:]
        self.i = len(self.parts)
        self.off = 0
        return rest


def load_pieces(parts):
    """The value of the JSON text that the bytes pieces make up together, without joining
    them into one block on MicroPython (ValueError when they are not one JSON text). Slower
    there than ``json.loads`` of the joined text (~1.3 ms a KB on a laptop's unix port): for
    when that block does not fit."""
    return json.load(_PiecesReader(parts))
