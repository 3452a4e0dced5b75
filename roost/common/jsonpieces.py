"""JSON text written in pieces: a long list (a Paxos snapshot holds a whole store) never
becomes one string in RAM. Flash files and a laggard's snapshot copy are written this way
on a board, whose fragmented heap may hold the pieces but no single block of their size;
``JsonFeed`` decodes such text as its pieces arrive (a snapshot received in datagrams)."""

import binascii
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


# what JsonFeed expects next
_VALUE = const(0)
_AFTER = const(1)  # after a value: "," or a close (or the end)
_KEY = const(2)
_COLON = const(3)
_WS = b" \t\r\n"
_STOP = b" \t\r\n,]}:"  # what ends a number or a literal


class JsonFeed:
    """One JSON text decoded as its pieces arrive, in order: ``feed(bytes)`` for each, then
    ``finish()`` returns the value (ValueError for text that is not one JSON value). It
    keeps the values read so far and the few bytes of a token cut by a piece's end, never
    the text: a snapshot received in datagrams is not held as text beside its value, and
    no block of its size is asked for (a fragmented board heap has none)."""

    __slots__ = ("_stack", "_tail", "_want", "_empty", "_done", "_value")

    def __init__(self):
        self._stack = []  # open containers, each [list or dict, pending key]
        self._tail = b""  # the start of a token the last piece cut
        self._want = _VALUE
        self._empty = False  # just after "[" or "{": a close may come instead of a value
        self._done = False
        self._value = None

    def _put(self, v):
        st = self._stack
        if not st:
            self._value = v
            self._done = True
        else:
            top = st[-1]
            if type(top[0]) is list:
                top[0].append(v)
            else:
                top[0][top[1]] = v
        self._want = _AFTER
        self._empty = False

    def _open(self, c):
        cont = [] if c == 91 else {}
        self._put(cont)
        self._done = False
        self._stack.append([cont, None])
        self._want = _VALUE if c == 91 else _KEY
        self._empty = True

    def _close(self, c):
        st = self._stack
        if not st or (type(st[-1][0]) is list) != (c == 93):
            raise ValueError("JSON: unbalanced %s" % chr(c))
        st.pop()
        self._done = not st
        self._want = _AFTER
        self._empty = False

    def feed(self, data, final=False):
        b = self._tail + data if self._tail else data
        self._tail = b""
        i = 0
        n = len(b)
        while i < n:
            c = b[i]
            if c in _WS:
                i += 1
                continue
            if self._done:
                raise ValueError("JSON: data after the value")
            want = self._want
            if want == _AFTER:
                if c == 44 and self._stack:  # ","
                    self._want = _VALUE if type(self._stack[-1][0]) is list else _KEY
                elif c == 93 or c == 125:
                    self._close(c)
                else:
                    raise ValueError("JSON: %r where , or a close was due" % chr(c))
                i += 1
                continue
            if want == _COLON:
                if c != 58:
                    raise ValueError("JSON: %r where : was due" % chr(c))
                self._want = _VALUE
                i += 1
                continue
            if (c == 93 or c == 125) and self._empty:
                self._close(c)
                i += 1
                continue
            if c == 34:  # a string: to the first quote not escaped
                k = i + 1
                while True:
                    k = b.find(b'"', k)
                    if k < 0:
                        break
                    m = k - 1
                    while b[m] == 92:  # backslashes before it
                        m -= 1
                    if (k - 1 - m) % 2 == 0:
                        break
                    k += 1
                if k < 0:
                    self._tail = b[i:]
                    return
                tok = b[i:k + 1]
                v = json.loads(tok) if tok.find(b"\\") >= 0 else tok[1:-1].decode()
                i = k + 1
                if want == _KEY:
                    self._stack[-1][1] = v
                    self._want = _COLON
                    self._empty = False
                else:
                    self._put(v)
                continue
            if want == _KEY:
                raise ValueError("JSON: %r where a key was due" % chr(c))
            if c == 91 or c == 123:  # "[" "{"
                self._open(c)
                i += 1
                continue
            j = i  # a number or true / false / null
            while j < n and b[j] not in _STOP:
                j += 1
            if j == n and not final:
                self._tail = b[i:]
                return
            self._put(json.loads(b[i:j]))
            i = j

    def finish(self):
        """The value, once the whole text was fed; ValueError if it was not one."""
        if self._tail:
            self.feed(b"", True)
        if not self._done:
            raise ValueError("JSON: the text ended inside a value")
        return self._value
