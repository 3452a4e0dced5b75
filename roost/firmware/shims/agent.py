"""The virtual board's interpreter loop: runs inside ``micropython`` with cwd = the flash.

Requests on stdin: one kind byte, 8 hex digits of length, a newline, then the payload.
  E <code>   run code in the board's __main__ namespace (raw REPL)
  S <line>   compile in "single" mode (friendly REPL: expression results are printed)
  F <name>   run a file from the flash if it exists (boot.py, main.py)
Output of the code goes straight to stdout; each request ends with a marker:
  \\x00\\x1eRVB<nonce> <8 hex request number> <status byte> <8 hex length> <error text>
status: O ok, E exception (error text = the traceback), R soft reset, H hard reset.
Ctrl-C reaches running code as SIGINT (KeyboardInterrupt); one that arrives between
requests is swallowed here.
"""

import io
import sys


class _Reader:
    """Framed requests from stdin, reading each payload with one allocation (the heap is the
    board's: a 12 KB raw-paste must not cost four copies). Bytes already read survive a
    KeyboardInterrupt."""

    def __init__(self, rd):
        self.rd = rd
        self.head = b""
        self.payload = None
        self.got = 0

    def next_request(self):
        """(kind, payload bytes), ("M", None) when the payload did not fit in the heap (it is
        read and dropped), or None at the end of input."""
        while len(self.head) < 10:
            d = self.rd.read(10 - len(self.head))
            if not d:
                return None
            self.head += d
        n = int(self.head[1:9], 16)
        if self.payload is None:
            self.payload = []
            self.got = 0
        try:
            while self.got < n and self.payload is not False:
                d = self.rd.read(n - self.got)  # the whole payload at once, as a rule
                if not d:
                    return None
                self.payload.append(d)
                self.got += len(d)
        except MemoryError:
            self.payload = False
        while self.got < n:  # no room: read it in small pieces and drop it
            d = self.rd.read(min(256, n - self.got))
            if not d:
                return None
            self.got += len(d)
        if self.payload is False:
            req = (b"M", None)
        elif len(self.payload) == 1:
            req = (self.head[0:1], self.payload[0])
        else:
            req = (self.head[0:1], b"".join(self.payload))
        self.head = b""
        self.payload = None
        return req


def _marker(out, nonce, seq, status, err):
    eb = err.encode() if isinstance(err, str) else err
    out.write(b"\x00\x1eRVB" + nonce + b"%08x" % seq + status + b"%08x" % len(eb) + eb)


def _run(kind, payload, g):
    """(status, error text) after running one request."""
    machine = None
    try:
        import machine

        machine.RESET_REQUEST[0] = None
        if kind == b"M":
            raise MemoryError("no room for the code sent (the board's heap is full)")
        if kind == b"F":
            name = bytes(payload).decode()
            try:
                with open(name) as f:
                    src = f.read()
            except OSError:
                return b"O", ""
            exec(compile(src, name, "exec"), g)
        elif kind == b"S":
            exec(compile(payload, "<stdin>", "single"), g)
        else:
            exec(compile(payload, "<stdin>", "exec"), g)
        return b"O", ""
    except SystemExit:
        hard = machine is not None and machine.RESET_REQUEST[0] == "hard"
        return (b"H" if hard else b"R"), ""
    except BaseException as e:  # KeyboardInterrupt included: it is the user's Ctrl-C
        buf = io.StringIO()
        sys.print_exception(e, buf)
        lines = buf.getvalue().split("\n")  # hide this loop's own frame, as a board would
        return b"E", "\n".join(ln for ln in lines if "shims/agent.py" not in ln)


def _romfs_partition():
    """A board built with ROMFS: the partition ("PATH SIZE" in ROOST_VBOARD_ROMFS) is the
    first thing allocated, ``vfs`` gains rom_ioctl, and /rom (when it holds an image) comes
    right after the current directory on sys.path, as the firmware mounts it at power-on."""
    import os

    spec = os.getenv("ROOST_VBOARD_ROMFS")
    if not spec:
        return
    path, size = spec.rsplit(" ", 1)
    import romfs

    sys.modules["vfs"] = romfs
    if romfs.setup(path, int(size)):
        sys.path[1:1] = ["/rom", "/rom/lib"]


def main():
    nonce = sys.argv[1].encode()
    shim_dir = sys.argv[2]
    sys.path[:] = ["", ".frozen", "lib", shim_dir]
    _romfs_partition()
    reader = _Reader(sys.stdin.buffer)
    out = sys.stdout.buffer
    g = {"__name__": "__main__"}
    seq = 0
    _marker(out, nonce, seq, b"B", "")
    while True:
        try:
            req = reader.next_request()
        except KeyboardInterrupt:  # a Ctrl-C that came as the last request ended
            continue
        except MemoryError:
            reader.head, reader.payload = b"", None
            req = (b"M", None)
        if req is None:
            return
        seq += 1
        status, err = _run(req[0], req[1], g)
        req = None
        while True:  # the marker must go out; a repeat is ignored (same seq)
            try:
                _marker(out, nonce, seq, status, err)
                break
            except KeyboardInterrupt:
                continue
        if status in (b"R", b"H"):
            return


if __name__ == "__main__":
    main()
