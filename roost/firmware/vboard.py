"""``roost board serve``: a virtual board on a TCP port. CPython-only.

The board is reachable as ``socket://127.0.0.1:PORT`` (pyserial's socket URL, which mpremote
and ``roost flash`` accept as a device) and speaks the MicroPython REPL protocol that
mpremote uses: the friendly REPL (``>>>``, Ctrl-C, Ctrl-D soft reset), the raw REPL (Ctrl-A;
Ctrl-D runs the code and answers ``OK`` output ``\\x04`` error ``\\x04>``; Ctrl-B leaves) and
raw-paste mode (``\\x05A\\x01``, answered ``R\\x01`` and a flow-control window).

Behind it runs the REAL MicroPython unix port with the board profile's heap
(``micropython -X heapsize=...``) as one persistent child process
(``roost/firmware/shims/agent.py``) whose working directory is the flash directory, so
``os.listdir``, ``open`` and mpremote's ``fs`` commands act on the flash. Each raw-REPL
execution runs in that interpreter's ``__main__`` namespace; a soft reset starts a fresh
interpreter and runs ``boot.py`` (then ``main.py`` unless the raw REPL is active) with their
output on the serial stream; ``machine.reset()`` is a hard reset. Simulated parts (``machine``,
``network`` and, on an esp32-cam, ``camera`` shims, outside the flash) are described in
``shims/``. Differences
from a real ESP32: a Ctrl-C during boot.py also skips main.py; the watchdog is not enforced.

A connection that opens with a SLIP frame (esptool's) finds the board in download mode:
``romloader.RomLoader`` answers as an ESP32's ROM loader until that connection closes, then
the board resets.

Killing this process is pulling the plug: the interpreter dies with it.
"""

import argparse
import collections
import hashlib
import json
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from roost.emulator.lifeline import die_with_parent
from roost.firmware.build import board_heap
from roost.firmware.flash import ESPTOOL_CHIP, FIRMWARE_OFFSET
from roost.firmware.romloader import RomLoader

SHIM_DIR = Path(__file__).resolve().parent / "shims"
AGENT = SHIM_DIR / "agent.py"
BANNER = (
    b"MicroPython v1.29.0 on 2026-01-01; ESP32 module (roost virtual board) with ESP32\r\n"
    b'Type "help()" for more information.\r\n'
)
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
PASTE_WINDOW = 256  # bytes the host may send before the board grants more (as on an ESP32)
SW_RESET = b"rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)"


_CONSOLE_MAX = 256 * 1024  # bytes of console file before it is rotated once


class VirtualBoard:
    """The serial side (one TCP client at a time) and the interpreter behind it."""

    def __init__(self, flash_dir: Path, port: int, board: str = "esp32",
                 host: str = "127.0.0.1", pins_file: Path | None = None,
                 log=None, heap: int | None = None, dir_arg: str | None = None,
                 romfs: int = 0) -> None:
        self.flash = Path(flash_dir).resolve()
        if not self.flash.is_dir():
            raise ValueError("flash directory %s does not exist: create it first" % flash_dir)
        self.heap = heap if heap else board_heap(board)
        # a ROMFS build's partition (bytes; 0: none), kept in a file beside the flash dir and
        # read into the first block of the heap, which grows by its size (shims/romfs.py)
        self.romfs = romfs
        self.romfs_file = self.flash.with_name(self.flash.name + ".romfs")
        # what the board prints, whoever holds its port (a real board's console is lost when
        # nobody listens; a rehearsal wants to see "joined" after a power cycle): tail -f it
        self.console_file = self.flash.with_name(self.flash.name + ".console.log")
        self._console = None  # the console file, opened at the first output and kept open
        self._console_bytes = 0
        self.dir_arg = dir_arg if dir_arg is not None else str(flash_dir)
        self.board = board
        self.host, self.port = host, port
        self.pins_file = pins_file
        self.log = log or (lambda line: None)
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.client: socket.socket | None = None
        self.child: subprocess.Popen | None = None
        self.nonce = b""
        self.mark = b""
        self.outbuf = b""
        self.inbuf = bytearray()
        self.mode = "friendly"  # friendly | raw | paste
        self.line = bytearray()  # friendly REPL: current line
        self.block: list[str] = []  # friendly REPL: lines of a compound statement
        self.raw = bytearray()  # raw REPL: code so far
        self.paste_got = 0
        self.jobs: collections.deque = collections.deque()
        self.current: tuple[int, str] | None = None
        self.seq = 0
        self.after_boot = b""
        self.hold_until = 0.0
        self.interrupted = False
        self.last_cr = False
        self.resets = 0
        self.stopping = False
        self.fresh_client = False  # no byte read yet from the newest connection
        self.loader: RomLoader | None = None  # download mode: esptool is talking to the ROM
        self.erased = False  # no firmware since esptool erased the chip: nothing answers
        self.flash_image = self.flash.with_name(self.flash.name + ".flash.bin")

    # ------------------------------------------------------------------ serial output

    def _send(self, data: bytes) -> None:
        if not data or self.client is None:
            return  # nobody at the other end of the cable: the bytes are gone, as on a UART
        try:
            self.client.sendall(data)
        except OSError:
            self._drop_client()

    def _cooked(self, data: bytes) -> bytes:
        """\\n -> \\r\\n, as a board's console does for printed text."""
        out = bytearray()
        for b in data:
            if b == 10 and not self.last_cr:
                out += b"\r"
            out.append(b)
            self.last_cr = b == 13
        return bytes(out)

    # ------------------------------------------------------------------ the interpreter

    def _start_child(self) -> None:
        self._kill_child()
        self.nonce = secrets.token_hex(8).encode()
        self.mark = b"\x00\x1eRVB" + self.nonce
        self.outbuf = b""
        self.seq = 0
        env = dict(os.environ)
        env["ROOST_VBOARD_ID"] = "%s:%d" % (self.board, self.port)
        # who powers this board: lets `roost flash --join-dir` register the pulled-plug pid
        env["ROOST_VBOARD_HOST"] = "%d %s" % (os.getpid(), self.dir_arg)
        if self.pins_file is not None:
            env["ROOST_VBOARD_PINS"] = str(self.pins_file)
        env.pop("ROOST_VBOARD_ROMFS", None)
        if self.romfs:
            env["ROOST_VBOARD_ROMFS"] = "%s %d" % (self.romfs_file, self.romfs)
        self.child = subprocess.Popen(
            ["micropython", "-X", "heapsize=%d" % (self.heap + self.romfs), str(AGENT),
             self.nonce.decode(),
             str(SHIM_DIR)],
            cwd=self.flash, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent(), bufsize=0,
        )
        os.set_blocking(self.child.stdout.fileno(), False)
        self.sel.register(self.child.stdout, selectors.EVENT_READ, "child")
        self.resets += 1

    def _kill_child(self) -> None:
        """Stop the interpreter; what was queued for it goes with it."""
        self.jobs.clear()
        self.current = None
        c, self.child = self.child, None
        if c is None:
            return
        try:
            self.sel.unregister(c.stdout)
        except (KeyError, ValueError):
            pass
        if c.poll() is None:
            c.kill()
        try:
            c.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (c.stdin, c.stdout):
            try:
                f.close()
            except OSError:
                pass

    def _boot(self, run_main: bool, after: bytes) -> None:
        """A fresh interpreter runs boot.py (and main.py), then the prompt `after`."""
        self._start_child()
        self.jobs.append(("F", b"boot.py", "boot"))
        if run_main:
            self.jobs.append(("F", b"main.py", "boot"))
        self.after_boot = after
        self.last_cr = False
        self._dispatch()

    def soft_reset(self) -> None:
        self.log("soft reset (%s REPL)" % self.mode)
        self._says(b"MPY: soft reboot\r\n")
        raw = self.mode in ("raw", "paste")
        self.mode = "raw" if raw else "friendly"
        self._boot(not raw, RAW_BANNER if raw else BANNER + b">>> ")

    def hard_reset(self, cause: bytes = SW_RESET) -> None:
        self.log("hard reset")
        self.mode = "friendly"
        self.line.clear()
        self.block = []
        self._says(b"\r\n" + cause + b"\r\n")
        self.erased = not self._has_firmware()
        if self.erased:  # esptool erased the chip and wrote no firmware: nothing boots
            self._kill_child()
            self._says(b"invalid header: 0xffffffff\r\n[roost virtual board: no firmware at "
                       b"0x%x since esptool erased it: write one (roost flash --firmware "
                       b"FILE)]\r\n" % self._firmware_offset())
            return
        self._says(b"[roost virtual board: flash " + str(self.flash).encode()
                   + b", heap %d bytes]\r\n" % self.heap)
        self._boot(True, BANNER + b">>> ")

    def _firmware_offset(self) -> int:
        return FIRMWARE_OFFSET.get(self.board, 0x1000)

    def _has_firmware(self) -> bool:
        """False once esptool erased the chip and wrote no image (0xE9) where the boot ROM
        looks for one; a board esptool never touched runs MicroPython, as bought."""
        try:
            with self.flash_image.open("rb") as f:
                f.seek(self._firmware_offset())
                return f.read(1) == b"\xe9"
        except OSError:
            return True

    def _busy(self) -> bool:
        return self.current is not None or bool(self.jobs)

    def _dispatch(self) -> None:
        if self.current is not None or not self.jobs or self.child is None:
            return
        if time.monotonic() < self.hold_until:
            return
        kind, payload, ctx = self.jobs.popleft()
        self.seq += 1
        self.current = (self.seq, ctx)
        try:
            self.child.stdin.write(kind.encode() + b"%08x\n" % len(payload) + payload)
        except OSError:
            pass  # the interpreter died: its output's end says so

    def _printed(self, data: bytes) -> None:
        """Bytes the board printed: to whoever holds the port, and to the console file."""
        self._send(self._cooked(data))
        self._to_console(data)

    def _says(self, data: bytes) -> None:
        """The board's own lines (a reset's banner, 'MPY: soft reboot', the virtual board's
        notes; already \r\n): to the port and to the console file, as firmware.md says
        of everything the board prints (they reached the port only)."""
        self._send(data)
        self._to_console(data.replace(b"\r\n", b"\n"))

    def _to_console(self, data: bytes) -> None:
        try:
            if self._console is None or self._console_bytes > _CONSOLE_MAX:
                self._close_console()
                if self.console_file.exists() and self.console_file.stat().st_size > _CONSOLE_MAX:
                    self.console_file.replace(self.console_file.with_name(
                        self.console_file.name + ".1"))  # one older file kept
                self._console = open(self.console_file, "ab", buffering=0)
                self._console_bytes = self.console_file.stat().st_size
            self._console.write(data)
            self._console_bytes += len(data)
        except OSError:
            pass  # the console goes on without its copy

    def _close_console(self) -> None:
        f, self._console = self._console, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def _on_child_output(self, data: bytes) -> None:
        self.outbuf += data
        m = self.mark
        while self.outbuf:
            i = self.outbuf.find(b"\x00")
            if i < 0:
                self._printed(self.outbuf)
                self.outbuf = b""
                return
            if i:
                self._printed(self.outbuf[:i])
                self.outbuf = self.outbuf[i:]
            head = len(m) + 17
            if len(self.outbuf) < len(m):
                if m.startswith(self.outbuf):
                    return  # maybe the start of a marker: wait for more
            elif self.outbuf.startswith(m):
                if len(self.outbuf) < head:
                    return
                seq = int(self.outbuf[len(m):len(m) + 8], 16)
                status = self.outbuf[len(m) + 8:len(m) + 9]
                n = int(self.outbuf[len(m) + 9:head], 16)
                if len(self.outbuf) < head + n:
                    return
                err = self.outbuf[head:head + n]
                self.outbuf = self.outbuf[head + n:]
                self._on_done(seq, status, err)
                continue
            self._printed(self.outbuf[:1])
            self.outbuf = self.outbuf[1:]

    def _on_done(self, seq: int, status: bytes, err: bytes) -> None:
        if self.current is None or seq != self.current[0]:
            return  # the ready marker, or a repeat
        ctx = self.current[1]
        self.current = None
        if self.interrupted:  # let a late Ctrl-C land while the interpreter is idle
            self.interrupted = False
            self.hold_until = time.monotonic() + 0.1
        if ctx == "raw":
            if status == b"H":
                self.hard_reset()
                return
            self._send(b"\x04" + self._cooked(err) + b"\x04")
            if status == b"R":
                self.soft_reset()
                return
            self._send(b">")
        else:
            self._send(self._cooked(err))
            if status == b"H":
                self.hard_reset()
                return
            if status == b"R":
                self.soft_reset()
                return
            if ctx == "friendly":
                self._send(b">>> ")
            elif not self.jobs:
                self._send(self.after_boot)
        self._dispatch()
        self._process_input()

    def _on_child_exit(self) -> None:
        code = self.child.poll() if self.child is not None else None
        self.log("interpreter exited (%s)" % code)
        self._says(b"\r\n[roost virtual board: the interpreter stopped (exit %s); resetting]\r\n"
                   % str(code).encode())
        time.sleep(0.2)  # a board in a crash loop must not eat the host
        self.hard_reset(b"rst:0xf (RTCWDT_RTC_RESET)")

    # ------------------------------------------------------------------ serial input

    def _interrupt(self) -> None:
        if self.current is not None and self.child is not None and self.child.poll() is None:
            self.interrupted = True
            self.child.send_signal(signal.SIGINT)
        if self.jobs:  # a Ctrl-C during boot.py also skips main.py (see the docstring)
            self.jobs.clear()
            if self.current is None:
                self._send(self.after_boot)

    def _exec(self, kind: str, code: bytes, ctx: str) -> None:
        self.jobs.append((kind, code, ctx))
        self._dispatch()

    def _process_input(self) -> None:
        if self.erased:  # no interpreter answers: the bytes are lost, as on a blank chip
            self.inbuf.clear()
            return
        while self.inbuf:
            if self._busy():
                i = self.inbuf.find(b"\x03")
                if i < 0 or self.mode == "paste":
                    return
                del self.inbuf[:i + 1]
                self._interrupt()
                continue
            if self.mode == "paste":
                self._paste_input()
                continue
            b = self.inbuf[0]
            del self.inbuf[0]
            if self.mode == "raw":
                self._raw_byte(b)
            else:
                self._friendly_byte(b)

    def _paste_input(self) -> None:
        i = self.inbuf.find(b"\x04")
        chunk = bytes(self.inbuf if i < 0 else self.inbuf[:i])
        del self.inbuf[:len(chunk) if i < 0 else i + 1]
        before = self.paste_got // PASTE_WINDOW
        self.paste_got += len(chunk)
        self.raw += chunk
        self._send(b"\x01" * (self.paste_got // PASTE_WINDOW - before))
        if i >= 0:
            self._send(b"\x04")
            self.mode = "raw"
            code, self.raw = bytes(self.raw), bytearray()
            self._exec("E", code, "raw")

    def _raw_byte(self, b: int) -> None:
        if b == 0x01:  # Ctrl-A again: a fresh raw REPL
            self.raw.clear()
            self._send(b"\r\n" + RAW_BANNER)
        elif b == 0x02:  # Ctrl-B: friendly REPL
            self.raw.clear()
            self.mode = "friendly"
            self._send(b"\r\n" + BANNER + b">>> ")
        elif b == 0x03:
            self.raw.clear()
        elif b == 0x04:
            if not self.raw:
                self.soft_reset()
            else:
                code, self.raw = bytes(self.raw), bytearray()
                self._send(b"OK")
                self._exec("E", code, "raw")
        elif b == 0x05 and self.inbuf[:2] == b"A\x01" and not self.raw:
            del self.inbuf[:2]
            self.mode = "paste"
            self.paste_got = 0
            self._send(b"R\x01" + PASTE_WINDOW.to_bytes(2, "little"))
        else:
            self.raw.append(b)

    def _friendly_byte(self, b: int) -> None:
        if b == 0x01:
            self.line.clear()
            self.block = []
            self.mode = "raw"
            self.raw.clear()
            self._send(b"\r\n" + RAW_BANNER)
        elif b == 0x02:
            self._send(b"\r\n" + BANNER + b">>> ")
        elif b == 0x03:
            self.line.clear()
            self.block = []
            self._send(b"\r\nKeyboardInterrupt\r\n>>> ")
        elif b == 0x04:
            if not self.line and not self.block:
                self._send(b"\r\n")
                self.soft_reset()
        elif b in (0x08, 0x7F):
            if self.line:
                self.line.pop()
                self._send(b"\x08 \x08")
        elif b == 0x0D:
            self._send(b"\r\n")
            text = self.line.decode("utf-8", "replace")
            self.line.clear()
            if self.block:
                if text.strip():
                    self.block.append(text)
                    self._send(b"... ")
                    return
                code = "\n".join(self.block) + "\n"
                self.block = []
                self._exec("S", code.encode(), "friendly")
            elif text.rstrip().endswith(":"):
                self.block = [text]
                self._send(b"... ")
            elif text.strip():
                self._exec("S", text.encode(), "friendly")
            else:
                self._send(b">>> ")
        elif b == 0x0A:
            pass
        elif b >= 0x20 or b == 0x09:
            self.line.append(b)
            self._send(bytes([b]))

    # ------------------------------------------------------------------ the loop

    def _drop_client(self) -> None:
        c, self.client = self.client, None
        if c is not None:
            try:
                self.sel.unregister(c)
            except (KeyError, ValueError):
                pass
            c.close()
        self.inbuf.clear()
        if self.loader is not None:  # esptool let go: the board resets into what it holds
            try:
                self.loader.close()
            except OSError as e:  # a full disk: the write is lost, the board goes on
                self.log("the chip's flash image was not saved (%s)" % e)
            self.loader = None
            if not self.stopping:
                self.hard_reset(b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)")

    # ------------------------------------------------------------------ download mode

    def _enter_download_mode(self) -> None:
        """esptool's first bytes (a SLIP frame) on a fresh connection: as if the board had
        been reset with GPIO0 held low, the ROM loader answers instead of MicroPython (a
        TCP port has no DTR/RTS lines for esptool's automatic reset)."""
        self.log("download mode (esptool)")
        self._kill_child()
        self.mode = "friendly"
        # an Espressif MAC, the same for this flash directory every time
        mac = b"\x24\x0a\xc4" + hashlib.sha256(str(self.flash).encode()).digest()[:3]
        self.loader = RomLoader(self.flash_image, mac, self._erase_files, self.log,
                                ESPTOOL_CHIP.get(self.board, "esp32"))

    def _erase_files(self) -> None:
        """The chip's filesystem partition was erased: so are the board's files."""
        for path in sorted(self.flash.rglob("*"), reverse=True):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        if self.romfs_file.exists():
            self.romfs_file.unlink()

    def start(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((self.host, self.port))
        except OSError as e:
            raise ValueError("port %d on %s is taken (%s): choose another with --port"
                             % (self.port, self.host, e.strerror)) from None
        self.port = self.listener.getsockname()[1]
        self.listener.listen(2)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.hard_reset(b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)")

    def step(self, timeout: float = 0.05) -> None:
        for key, _ in self.sel.select(timeout):
            if key.data == "listen":
                try:
                    conn, _addr = self.listener.accept()
                except OSError:
                    continue
                self._drop_client()  # a serial port has one user: the newest wins
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.settimeout(5)
                self.client = conn
                self.fresh_client = True
                self.sel.register(conn, selectors.EVENT_READ, "client")
            elif key.data == "client":
                try:
                    data = self.client.recv(65536) if self.client else b""
                except OSError:
                    data = b""
                if not data:
                    self._drop_client()
                    continue
                if self.fresh_client and data[0] == 0xC0:
                    self._enter_download_mode()
                self.fresh_client = False
                if self.loader is not None:
                    self._send(self.loader.feed(data))
                    continue
                self.inbuf += data
                self._process_input()
            elif key.data == "child":
                try:
                    data = self.child.stdout.read(65536) if self.child else b""
                except BlockingIOError:
                    continue
                if data:
                    self._on_child_output(data)
                elif data is not None:
                    self._on_child_exit()
        if self.current is None and self.jobs:
            self._dispatch()
        if not self._busy() and self.inbuf:
            self._process_input()

    def close(self) -> None:
        self._kill_child()
        self._drop_client()
        self._close_console()
        if self.listener is not None:
            try:
                self.sel.unregister(self.listener)
            except (KeyError, ValueError):
                pass
            self.listener.close()
            self.listener = None

    def serve_forever(self) -> None:
        self.start()
        try:
            while not self.stopping:
                self.step()
        finally:
            self.close()


# what a board's flash holds once flashed, or once MicroPython booted on it
_FLASH_MARKS = ("boot.py", "main.py", "boot.mpy", "bootsel.mpy", "config.json", "slots",
                "data", "secrets.json")


def _not_a_flash(flash: Path) -> str | None:
    """The first entry of a non-empty directory with nothing a board's flash holds (a
    user's folder given by mistake), else None."""
    names = sorted(p.name for p in flash.iterdir())
    if not names or any(n in _FLASH_MARKS for n in names):
        return None
    return names[0]


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.heap is not None and not 16 <= args.heap <= 65536:
        raise ValueError("--heap must be 16 to 65536 KB")
    if not 0 <= args.romfs <= 16384 or args.romfs % 4:
        raise ValueError("--romfs must be 0 to 16384 KB, a multiple of 4 (the erase block)")
    if not 0 <= args.port <= 65535:
        raise ValueError("--port must be 0 to 65535 (0: any free one)")
    if args.hold_pin is not None and not 0 <= args.hold_pin <= 48:
        raise ValueError("--hold-pin must be a GPIO number, 0 to 48")
    board_heap(args.board)  # an unknown or CPython board: one sentence, nothing created
    flash = Path(args.dir)
    if flash.exists() and not flash.is_dir():
        raise ValueError("--dir %s is a file: give a directory for the board's flash" % flash)
    stranger = _not_a_flash(flash) if flash.exists() else None
    if stranger is not None:
        raise ValueError("--dir %s holds %s and nothing of a board's flash: give an empty or "
                         "new directory (roost flash --firmware erases the board's files)"
                         % (flash, stranger))
    if not flash.exists():
        flash.mkdir(parents=True)
    # default beside the flash, like DIR.romfs (a killed board leaves no temp dir), and
    # rewritten at each start: levels of an earlier run do not carry over
    pins = Path(args.pins) if args.pins else flash.resolve().with_name(
        flash.resolve().name + ".pins.json")
    if args.hold_pin is not None or not args.pins or not pins.exists():
        held = {} if args.hold_pin is None else {str(args.hold_pin): 0}
        pins.write_text(json.dumps(held))
    board = VirtualBoard(flash, args.port, args.board, pins_file=pins,
                         log=(lambda line: print("roost board: " + line, file=sys.stderr,
                                                 flush=True)) if args.verbose else None,
                         heap=args.heap * 1024 if args.heap else None, dir_arg=args.dir,
                         romfs=args.romfs * 1024)

    def stop(_sig, _frame):
        board.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        board.start()
        print("roost: virtual %s board on socket://%s:%d, flash %s, heap %d bytes, pins %s%s; "
              "its console: tail -f %s"
              % (args.board, board.host, board.port, board.flash, board.heap, pins,
                 ", ROMFS partition %d bytes in %s" % (board.romfs, board.romfs_file)
                 if board.romfs else "", board.console_file), flush=True)
        while not board.stopping:
            board.step()
    finally:
        board.close()
    return 0


def add_board_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "board",
        help="a virtual board: the real MicroPython behind a serial-over-TCP REPL",
        description="Virtual boards for trying the firmware and the flashing path without "
        "hardware.",
    )
    bsub = p.add_subparsers(dest="board_command", metavar="ACTION")
    bsub.required = True
    s = bsub.add_parser(
        "serve",
        help="serve a virtual board at socket://127.0.0.1:PORT (mpremote and roost flash "
        "accept it as a device)",
        description="Serve a virtual board: the MicroPython REPL protocol (friendly, raw, "
        "raw-paste) over TCP, backed by the real micropython with the board's heap and DIR as "
        "its flash. A soft reset runs boot.py and main.py. esptool finds it in download mode "
        "(roost flash --firmware works against it). Stop it (or kill it) to pull the plug.",
    )
    s.add_argument("--port", type=int, default=7777, help="TCP port (0: any free one)")
    s.add_argument("--dir", required=True, help="the board's flash directory")
    s.add_argument("--board", default="esp32", help="board profile (default esp32)")
    s.add_argument("--hold-pin", type=int, default=None, metavar="N",
                   help="hold GPIO N low from power-on (e.g. 0: the safe-mode pin)")
    s.add_argument("--pins", default=None, metavar="FILE",
                   help='pin levels as JSON ({"0": 0} holds GPIO0 low); read at every '
                   "Pin.value(), so editing it acts at once (default DIR.pins.json, "
                   "rewritten at each start)")
    s.add_argument("--heap", type=int, default=None, metavar="KB",
                   help="MicroPython heap in KB instead of the board profile's (the 64-bit "
                   "unix port needs more than an ESP32 for a whole node: see docs)")
    s.add_argument("--romfs", type=int, default=0, metavar="KB",
                   help="a firmware built with ROMFS: a partition of KB (kept in DIR.romfs) "
                   "that mpremote romfs deploy and roost flash --romfs write, mounted at /rom; "
                   "the heap grows by its size, as flash costs a board no RAM")
    s.add_argument("--verbose", action="store_true", help="log resets on stderr")
    s.set_defaults(handler=_cmd_serve)
    return p
