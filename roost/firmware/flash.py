"""``roost flash``: put a node on a board. CPython-only.

    roost flash --port PORT --board esp32 --node-id n07 --wifi SSID --broker mqtt://HOST:1883

1. ``--firmware FILE`` only: erase the chip and write MicroPython itself with esptool (on a
   virtual board too: it plays the ESP32's ROM loader, ``roost/firmware/romloader.py``).
2. Copy the image (``roost build``; built on the fly without ``--image``), ``config.json``
   and ``secrets.json`` through mpremote's transport (its Python API, one connection for
   every step, 1 KB per write instead of mpremote's 256 bytes: four times fewer round trips).
3. Hash every file ON the board (sha256, code run through the raw REPL) and compare with
   the manifest.
4. Soft-reset the board and follow its serial console until it prints the awaited line
   (``roost: started <id>`` by default; ``--wait-for 'roost: joined fleet'`` once the
   runtime reports joining), or a safe-mode sentence, or the timeout.

Secrets (the Wi-Fi password and the fleet key) come from the environment
(``ROOST_WIFI_PASSWORD``, ``ROOST_FLEET_KEY``) or ``--secrets-file FILE`` (JSON), never from
the command line, and never appear in this command's output: board lines are shown with any
secret replaced by ``***``.
"""

import argparse
import binascii
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roost.common.ids import check_id
from roost.firmware import build, nodeconfig
from roost.hardware.boards import a_board, get_profile

# esptool's --chip for each board: it refuses a board of another chip (an ESP32 firmware
# written at 0x1000 of an ESP32-S3 would leave it unable to boot)
ESPTOOL_CHIP = {"esp32": "esp32", "esp32-wrover": "esp32", "esp32-cam": "esp32",
                "esp32-s3": "esp32s3"}
BOOT_OFFSET = {"esp32": 0x1000, "esp32s3": 0x0}  # where a chip's boot ROM reads the firmware
FIRMWARE_OFFSET = {board: BOOT_OFFSET[chip] for board, chip in ESPTOOL_CHIP.items()}
# which MicroPython download each board takes (micropython.org/download, or for the camera
# the ESP32-CAM release of micropython-camera-API)
FIRMWARE_NAME = {"esp32": "ESP32_GENERIC", "esp32-wrover": "ESP32_GENERIC's SPIRAM build",
                 "esp32-cam": "micropython-camera-API's AI-Thinker ESP32-CAM build",
                 "esp32-s3": "ESP32_GENERIC_S3"}
NETWORK_PORTS = ("socket://", "rfc2217://", "loop://")
_VERIFY = """
import hashlib, binascii
def _h(p):
    h = hashlib.sha256()
    try:
        f = open(p, 'rb')
    except OSError:
        return '-'
    while True:
        b = f.read(512)
        if not b:
            break
        h.update(b)
    f.close()
    return binascii.hexlify(h.digest()).decode()
for _p in %r:
    print('HASH', _p, _h(_p))
"""
_VERIFY_ROM = """
import hashlib, binascii
_m = vfs.rom_ioctl(2, 0)
_h = hashlib.sha256()
for _o in range(0, %(n)d, 1024):
    _h.update(_m[_o:min(_o + 1024, %(n)d)])
print(binascii.hexlify(_h.digest()).decode())
"""
_PREPARE = """
import os
def _rm(p):
    try:
        if os.stat(p)[0] & 0x4000:
            for n in os.listdir(p):
                _rm(p + '/' + n)
            os.rmdir(p)
        else:
            os.remove(p)
    except OSError:
        pass
_rm('slots/a')
_rm('slots/staging')
_rm('slots/rom.json')
for _d in %r:
    try:
        os.mkdir(_d)
    except OSError:
        pass
"""


class Redactor:
    """Replaces every secret in a text by ***."""

    def __init__(self, secrets: dict) -> None:
        self.values = sorted((v for v in secrets.values() if v), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for v in self.values:
            text = text.replace(v, "***")
        return text


def read_secrets(secrets_file: str | None, env: dict | None = None) -> dict:
    """{"fleet_key": ..., "wifi_password": ...} from the file, then the environment."""
    env = os.environ if env is None else env
    out: dict = {}
    if secrets_file:
        try:
            data = json.loads(Path(secrets_file).read_text())
        except OSError as e:
            raise ValueError("cannot read --secrets-file %s (%s)" % (secrets_file, e.strerror)) \
                from None
        except ValueError:
            raise ValueError("--secrets-file %s is not valid JSON" % secrets_file) from None
        if not isinstance(data, dict):
            raise ValueError("--secrets-file %s must hold a JSON object" % secrets_file)
        for k in ("fleet_key", "wifi_password"):
            if k in data and not isinstance(data[k], str):
                raise ValueError("--secrets-file %s: %s must be a string in quotes"
                                 % (secrets_file, k))
        out.update(data)
    if env.get("ROOST_FLEET_KEY"):
        out["fleet_key"] = env["ROOST_FLEET_KEY"]
    if env.get("ROOST_WIFI_PASSWORD"):
        out["wifi_password"] = env["ROOST_WIFI_PASSWORD"]
    return out


SEEDS_MAX = 8  # fleet members a joining board is given addresses of (config.json <= 4 KB);
# the others learn its address from its authenticated datagrams, and it learns theirs


def join_settings(join_dir: str, udp_port: int | None = None, node_id: str | None = None,
                  port: str = "", state: dict | None = None) -> tuple[dict, str]:
    """A fleet's directory -> (config.json additions, fleet key): the fleet name and broker,
    the board's UDP port, and in ``runtime`` what it needs to join. An emulated fleet gives
    the seeds with their UDP addresses (the fleet learns the board's address once its
    datagrams authenticate); a real fleet's plan (roost plan) gives the members, seeds and
    replica groups by id, reached through the broker. ``state``: the directory's, if read."""
    from roost.emulator.fleet import free_udp_port, load_state
    from roost.gateway import plan

    state = state or load_state(join_dir)
    try:
        key = (Path(join_dir) / "fleet.key").read_text().strip()
    except OSError as e:
        raise ValueError("cannot read the fleet key in %s (%s)" % (join_dir, e.strerror)) \
            from None
    if plan.is_plan(state):
        # a real board has the address to itself; virtual boards share this machine's
        port_no = udp_port or (free_udp_port() if port.startswith(NETWORK_PORTS)
                               else plan.UDP_PORT)
        return {"fleet": state["fleet"], "udp_port": port_no, "broker": state["broker"]["url"],
                "runtime": plan.shared(state, node_id or "")}, key
    seeds = [n for n in state["ids"] if state["nodes"][n].get("interp") != "board"][:SEEDS_MAX]
    peers = {n: ["127.0.0.1", state["nodes"][n]["port"]] for n in seeds}
    port = udp_port or free_udp_port()
    runtime = {"peers": peers, "seeds": seeds, "udp": ["0.0.0.0", port],
               "storage": "data", "status_file": "status.json", "preset": "lan",
               "mqtt": {"backoff_max_ms": 2000, "keepalive_s": 10}}
    add = {"fleet": state["fleet"], "udp_port": port, "runtime": runtime}
    if state.get("broker"):
        add["broker"] = state["broker"]["url"]
    return add, key


def _join_state(args: argparse.Namespace) -> dict | None:
    """The fleet directory's state with --join-dir (read once per flash), else None."""
    if not getattr(args, "join_dir", None):
        return None
    from roost.emulator.fleet import load_state

    return load_state(args.join_dir)


def _board_of(args: argparse.Namespace, state: dict | None) -> str:
    """--board, or the board a fleet's plan gives the node (the two must agree), or esp32."""
    from roost.gateway.plan import board_of, is_plan

    board = getattr(args, "board", None)
    if state is not None and is_plan(state):
        planned = board_of(state, args.node_id)
        if board and board != planned:
            raise ValueError("the plan in %s says %s is %s, not %s: leave out --board"
                             % (args.join_dir, args.node_id, a_board(planned), a_board(board)))
        return planned
    return board or "esp32"


def make_config(args: argparse.Namespace) -> tuple[dict, dict]:
    """(config dict, secrets dict), both validated the way the board will (ValueError)."""
    check_id(args.node_id, "--node-id")
    from roost.gateway.plan import is_plan

    state = _join_state(args)
    args.join_plan = state is not None and is_plan(state)  # flash() registers no plan's board
    if state is not None and not args.join_plan:
        info = state.get("nodes", {}).get(args.node_id)
        if info is not None and info.get("interp") != "board":
            # a board under the id of a node process: two nodes with one id (each boot
            # would make the fleet drop the other's datagrams as stale)
            raise ValueError("%s is a %s node of the fleet in %s: give the board an id of its "
                             "own (the fleet's nodes: %s)"
                             % (args.node_id, info.get("interp"), args.join_dir,
                                ", ".join(state.get("ids", []))))
    args.board = _board_of(args, state)
    cfg = {"node_id": args.node_id, "fleet": args.fleet, "board": args.board,
           "broker": args.broker or "", "wifi_ssid": args.wifi or ""}
    join_key = None
    if getattr(args, "join_dir", None):
        add, join_key = join_settings(args.join_dir, getattr(args, "udp_port", None),
                                      args.node_id, getattr(args, "port", "") or "", state)
        if args.broker:
            add.pop("broker", None)
        cfg.update(add)
    elif getattr(args, "udp_port", None) is not None:
        cfg["udp_port"] = args.udp_port  # it was taken with --join-dir only, else dropped
    if not cfg["broker"]:
        raise ValueError("no broker: give --broker mqtt://HOST:PORT (or --join-dir DIR of a "
                         "fleet: emulated, or planned with roost plan)")
    pin = args.safe_pin
    if pin is None:  # the board profile's safe-mode pin (GPIO0, the BOOT button, on devkits)
        pin = get_profile(args.board).pins.get("safe_mode")
    if pin is not None and pin != nodeconfig.FirmwareConfig.safe_pin:
        cfg["safe_pin"] = pin
    # the board's clock is not set when it boots, so its lowest boot number is written here:
    # a board flashed again (its flash wiped) must count past every number its peers saw
    from roost.node.nodemain import wall_floor

    cfg["runtime"] = dict(cfg.get("runtime") or {}, boot_floor=wall_floor())
    parsed, why = nodeconfig.validate(cfg)
    if why:
        raise ValueError(why.replace("config.json ", "the board's config: ", 1))
    if not cfg["wifi_ssid"] and not str(getattr(args, "port", "") or "").startswith(
            NETWORK_PORTS):  # a virtual board shares this machine's network
        raise ValueError("a board reaches its broker over Wi-Fi: give --wifi SSID (and its "
                         "password in ROOST_WIFI_PASSWORD)")
    sec = read_secrets(args.secrets_file)
    if join_key and sec.get("fleet_key") and sec["fleet_key"] != join_key:
        # the fleet would drop every datagram of the board as unauthenticated: it would
        # boot and never join, with nothing on its console to say why
        raise ValueError("the fleet key from %s is not the key of the fleet in %s, so the "
                         "board could never join it: leave the key out (--join-dir gives "
                         "the fleet's own)"
                         % ("ROOST_FLEET_KEY" if os.environ.get("ROOST_FLEET_KEY")
                            else "--secrets-file", args.join_dir))
    if join_key:
        sec["fleet_key"] = join_key
    if args.join_plan:  # the board's own MQTT user in the plan's broker (roost broker --plan)
        from roost.gateway.plan import mqtt_password

        pw = mqtt_password(state, args.node_id)
        if pw:
            sec["mqtt_password"] = pw
    if not sec.get("fleet_key"):
        raise ValueError("no fleet key: set ROOST_FLEET_KEY or give --secrets-file FILE "
                         "(never on the command line)")
    from roost.gateway.plan import MIN_KEY_CHARS

    if len(sec["fleet_key"]) < MIN_KEY_CHARS:
        raise ValueError("the fleet key has only %d of the %d characters it needs to keep out "
                         "a guess (roost plan writes one in DIR/fleet.key; or python -c "
                         "'import secrets; print(secrets.token_hex(16))')"
                         % (len(sec["fleet_key"]), MIN_KEY_CHARS))
    if args.wifi and not sec.get("wifi_password"):
        raise ValueError("no Wi-Fi password for %r: set ROOST_WIFI_PASSWORD or give "
                         "--secrets-file FILE (never on the command line)" % args.wifi)
    sec = {k: v for k, v in sec.items() if k in ("fleet_key", "wifi_password", "mqtt_password")}
    _, why = nodeconfig.validate_secrets(sec, parsed)
    if why:
        raise ValueError(why.replace("secrets.json ", "the secrets: ", 1))
    return cfg, sec


def check_firmware(firmware: str, board: str) -> None:
    """Refuse, before anything else happens, a --firmware that cannot be written."""
    path = Path(firmware)
    if not path.is_file():
        raise ValueError("--firmware %s is not a file" % firmware)
    if board not in FIRMWARE_OFFSET:
        raise ValueError("no firmware offset known for board %r" % board)
    with path.open("rb") as f:
        head = f.read(1)
    if head != b"\xe9":
        raise ValueError("--firmware %s is not an ESP32 firmware image (it does not start with "
                         "0xE9): take the .bin for your board from micropython.org/download "
                         "(unzip it first if it came zipped)" % firmware)


def write_firmware(port: str, board: str, firmware: str, say) -> None:
    """Erase the chip and write MicroPython with one esptool run, which checks the image is
    for this chip before it erases anything and checks the hash of what it wrote.

    On a serial port esptool resets the board into its ROM loader itself; a virtual board
    (socket://) enters it when esptool's first frame arrives, and resets when it lets go."""
    check_firmware(firmware, board)
    say("writing MicroPython %s with esptool (erase, then write at 0x%x)"
        % (Path(firmware).name, FIRMWARE_OFFSET[board]))
    try:
        out = subprocess.run([sys.executable, "-m", "esptool", "--chip", ESPTOOL_CHIP[board],
                              "--port", port, "--baud", "460800", "write-flash", "--erase-all",
                              hex(FIRMWARE_OFFSET[board]), firmware],
                             capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise ValueError("esptool did not finish writing the firmware within 10 minutes: "
                         "unplug the board, plug it in again and run roost flash again") from None
    if out.returncode != 0:
        raise ValueError("esptool could not write the firmware: %s"
                         % _esptool_error(out.stdout + out.stderr, port, board))
    say("firmware written at 0x%x and verified by esptool" % FIRMWARE_OFFSET[board])
    time.sleep(2)  # the board boots MicroPython after the write


def _esptool_error(text: str, port: str, board: str) -> str:
    """esptool's own sentence for its failure, with what a person should do about it."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    why = lines[-1] if lines else "no output"
    for i, line in enumerate(lines):
        m = re.search(r"(?:fatal|serial exception) error occurred:\s*(.*)", line)
        if m:
            why = m.group(1) or (lines[i + 1] if i + 1 < len(lines) else line)
            break
    why = why.replace(" Use --force to flash anyway.", "").rstrip(".")
    chip = re.search(r"This chip is (ESP32\S*), not", why)
    if chip:
        name = chip.group(1).lower().replace("-", "")
        boards = [b for b, c in sorted(ESPTOOL_CHIP.items()) if c == name]
        if not boards:
            return ("the board on %s is an %s, a chip roost has no board profile for (it knows "
                    "%s); nothing was erased" % (port, chip.group(1),
                                                 ", ".join(sorted(ESPTOOL_CHIP))))
        return ("the board on %s is an %s, not the chip of --board %s: give --board %s, and a "
                "firmware for that chip (nothing was erased)" % (port, chip.group(1), board,
                                                                " or ".join(boards)))
    if re.search(r"is not an? ESP32\S* image", why):
        return ("%s: it is a firmware for another chip, so nothing was erased; --board %s "
                "takes %s" % (why, board, FIRMWARE_NAME[board]))
    if why.startswith("Failed to connect"):
        return ("%s; put the board in download mode (hold BOOT, press and release EN, release "
                "BOOT) and run roost flash again" % why)
    return why


CHUNK = 2048  # bytes per exec on the board: 8 KB of source at most, fine in a 100 KB heap


class Board:
    """One mpremote connection (its Python API: mpremote.transport_serial.SerialTransport)
    used for the whole flash: copy, verify, reset, follow the console."""

    def __init__(self, port: str, timeout: float) -> None:
        try:
            from mpremote.transport import TransportError
            from mpremote.transport_serial import SerialTransport
        except ImportError:
            raise ValueError("mpremote is not installed: pip install mpremote") from None
        self.port = port
        self.timeout = timeout
        self.Error = TransportError
        try:
            self.t = SerialTransport(port, baudrate=115200)
        except (TransportError, OSError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise ValueError("cannot open %s (%s): is the board plugged in (roost ports) or "
                             "its roost board serve running, and no other program (mpremote, "
                             "Thonny, a serial monitor) holding the port?" % (port, why)) from None

    def close(self) -> None:
        try:
            self.t.close()
        except OSError:
            pass

    def exec(self, code: str, what: str) -> bytes:
        if not self.t.in_raw_repl:
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # mpremote prints what it read
                    self.t.enter_raw_repl(soft_reset=True)  # a fresh heap: boot.py only
            except (self.Error, OSError) as e:
                raise ValueError("no MicroPython answers on %s (%s): a new or erased board "
                                 "needs MicroPython first (roost flash --firmware FILE)"
                                 % (self.port, e)) from None
        try:
            out, err = self.t.exec_raw(code, timeout=self.timeout)
        except (self.Error, OSError) as e:
            raise ValueError("%s on %s failed: %s" % (what, self.port, e)) from None
        if err:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:]
            raise ValueError("%s on %s failed: %s" % (what, self.port, last[0] if last else "?"))
        return out

    def write_files(self, items: list[tuple[str, bytes]]) -> None:
        """Write files with as few round trips as possible: each exec carries up to CHUNK
        bytes, of one file or of several small ones."""
        code: list[str] = []
        size = 0
        for dest, data in items:
            pieces = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
            for k, piece in enumerate(pieces):
                if size + len(piece) > CHUNK and code:
                    self.exec("\n".join(code), "writing " + dest)
                    code, size = [], 0
                if k == 0:
                    code.append("f=open(%r,'wb')" % dest)
                code.append("f.write(%r)" % piece)
                size += len(piece)
                if k == len(pieces) - 1:
                    code.append("f.close()")
        if code:
            self.exec("\n".join(code), "writing files")

    def copy(self, image: Path, files: list[str], staged: Path, extra: list[str]) -> None:
        dirs = sorted({"/".join(f.split("/")[:i]) for f in files
                       for i in range(1, f.count("/") + 1)}, key=lambda d: (d.count("/"), d))
        self.exec(_PREPARE % (dirs,), "preparing the flash")
        items = [(f, (image / f).read_bytes()) for f in files]
        items += [(n, (staged / n).read_bytes()) for n in extra]
        self.write_files(items)

    def deploy_romfs(self, img: bytes) -> None:
        """Write img to the board's ROMFS partition (``vfs.rom_ioctl``, as ``mpremote romfs
        deploy`` does) and check its sha256 there (ValueError: no partition, too small, or
        other bytes)."""
        out = self.exec("import vfs\nprint('ROM', hasattr(vfs, 'rom_ioctl') and "
                        "vfs.rom_ioctl(1) > 0 and len(vfs.rom_ioctl(2, 0)))",
                        "looking for a ROMFS partition")
        size = int(out.split()[-1]) if out.split()[-1:] != [b"False"] else 0
        if not size:
            raise ValueError("%s has no ROMFS partition (its firmware was built without "
                             "ROMFS): flash without --romfs" % self.port)
        if len(img) > size:
            raise ValueError("the code's ROMFS image (%d bytes) does not fit the board's "
                             "%d-byte partition: flash without --romfs" % (len(img), size))
        self.exec("try:\n    vfs.umount('/rom')\nexcept OSError:\n    pass\n"
                  "from binascii import a2b_base64\nvfs.rom_ioctl(3, 0, %d)" % len(img),
                  "erasing the ROMFS partition")
        step = 4096
        for off in range(0, len(img), step):
            b64 = binascii.b2a_base64(img[off:off + step]).strip().decode()
            self.exec("vfs.rom_ioctl(4, 0, %d, a2b_base64(%r))" % (off, b64),
                      "writing the ROMFS partition")
        self.exec("vfs.rom_ioctl(5, 0)", "finishing the ROMFS partition")
        out = self.exec(_VERIFY_ROM % {"n": len(img)}, "hashing the ROMFS partition")
        if out.split()[-1:] != [hashlib.sha256(img).hexdigest().encode()]:
            raise ValueError("the ROMFS partition does not hold what was sent: flash again")

    def node_id(self) -> str | None:
        """The node id in the board's config.json, or None (no config, or unreadable)."""
        out = self.exec("import json\ntry:\n    f = open('config.json')\n    print('ID', "
                        "json.load(f).get('node_id'))\n    f.close()\nexcept Exception:\n"
                        "    print('ID -')", "reading the board's config")
        for line in out.decode("utf-8", "replace").splitlines():
            if line.startswith("ID ") and line[3:].strip() != "-":
                return line[3:].strip()
        return None

    def host_info(self) -> tuple[int | None, str, str]:
        """(pid of the `roost board serve` powering a virtual board or None, its --dir
        argument, the board's working directory)."""
        out = self.exec("import os\nprint('HOST', os.getenv('ROOST_VBOARD_HOST') or '-')\n"
                        "print('CWD', os.getcwd())", "asking the board who powers it")
        pid, arg, cwd = None, "", ""
        for line in out.decode("utf-8", "replace").splitlines():
            if line.startswith("HOST ") and line[5:].strip() != "-":
                first, _, rest = line[5:].strip().partition(" ")
                if first.isdigit():
                    pid, arg = int(first), rest
            elif line.startswith("CWD "):
                cwd = line[4:].strip()
        return pid, arg, cwd

    def verify(self, expected: dict) -> None:
        """Hash each file on the board and compare (ValueError naming the first mismatch)."""
        paths = sorted(expected)
        out = self.exec(_VERIFY % (paths,), "hashing files on the board")
        got = {}
        for line in out.decode("utf-8", "replace").splitlines():
            parts = line.strip().split(" ")
            if len(parts) == 3 and parts[0] == "HASH":
                got[parts[1]] = parts[2]
        for p in paths:
            if got.get(p) != expected[p]:
                raise ValueError("%s on the board does not match what was sent (%s): flash again"
                                 % (p, "missing" if got.get(p) in (None, "-") else "other bytes"))

    def reset_and_follow(self, wait_for: str, say, redact) -> str:
        """Soft-reset in the friendly REPL (boot.py, then main.py) and print the console
        until a line holds wait_for; a replica that said it is rebuilding (its flash was
        empty) is followed on until it votes, or the time is up (it is said, not an error:
        the board runs; roost status shows it as rebuilding until it votes)."""
        from roost.node.nodemain import REBUILDING, VOTING

        ser = self.t.serial
        if self.t.in_raw_repl:
            self.t.exit_raw_repl()
        time.sleep(0.1)
        ser.reset_input_buffer()
        ser.write(b"\x04")
        ser.timeout = 0.2
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        buf = b""
        # lines a program printed before our reset took (still on their way, or the board's
        # own run since power-up) are shown, not taken: they are another run's. MicroPython
        # says "soft reboot" when it resets; a board that does not is believed after 3 s
        ours = False
        started = False
        rebuilding = False
        short = None  # its last "still rebuilding ... answer it" line: why it waits
        found = None
        while time.monotonic() < deadline:
            data = ser.read(4096)
            if not data:
                continue
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = redact(raw.decode("utf-8", "replace").rstrip("\r"))
                if line.strip():
                    say("board: " + line)
                if not ours:
                    ours = "soft reboot" in line or time.monotonic() - t0 > 3.0
                    if not ours:
                        continue
                rebuilding = (rebuilding or REBUILDING in line) and not any(
                    v in line for v in VOTING)
                if "still " + REBUILDING in line:
                    short = line.split(REBUILDING + ": ", 1)[-1]
                if found is None and wait_for in line:
                    found = line
                    if rebuilding:
                        say("its flash was empty: following it until it has rebuilt and votes")
                if found is not None and not rebuilding:
                    return found
                started = started or line.startswith("roost: started")
                if "node stopped by MemoryError" in line or (  # it resets, and will again;
                        line.startswith("roost: safe mode:") and "(MemoryError" in line):
                    # or it could not even load its code
                    raise ValueError("the board ran out of memory (it says: %s): the node does "
                                     "not fit in it; use a board with PSRAM, or keep the code "
                                     "in flash (a ROMFS firmware and roost flash --romfs)"
                                     % line.split("roost: ", 1)[-1].strip())
                if line.startswith("roost: safe mode:"):
                    raise ValueError("the board is in safe mode: " + line[17:].strip())
                if "does not fit in this board's memory" in line:  # it idles from now on
                    raise ValueError("the board says " + line.split("roost: ", 1)[-1].strip())
                if "node stopped by" in line:  # it resets
                    raise ValueError("the node stopped right after it started (the board says "
                                     "%s)" % line.split("roost: ", 1)[-1].strip())
        if found is not None:
            say("it is still rebuilding after %d s: it does not count towards its group's "
                "majority until it has rebuilt (roost status then shows it as a replica or "
                "the LEADER)%s" % (self.timeout, "" if short is None else
                                   "; it said %s: switch its group's other replicas on, or "
                                   "mend the link to them" % short))
            return found
        if started and wait_for.startswith("roost: joined"):
            raise ValueError("the node started but had not joined within %d s: joining needs "
                             "another member of its fleet alive (start the Pis first; roost "
                             "status shows who is up); the board goes on trying"
                             % self.timeout)
        raise ValueError("the board did not print %r within %d s (see its lines above)"
                         % (wait_for, self.timeout))


def _check_not_twin(args: argparse.Namespace, say) -> None:
    """A fleet's node id (a plan's, or an emulated fleet's board) already online on another
    board: refuse (ValueError) before anything is written. Two boards under one id take
    each other's broker session in turn, and as replicas they would be two acceptors with
    one name and two memories. The board being flashed may be that node itself (its
    config.json names it): then it goes on."""
    from roost.emulator.fleet import FleetError
    from roost.gateway.client import reports_through_broker

    state = _join_state(args)
    try:
        word = reports_through_broker(state, 2.0).get(args.node_id, ("unknown",))[0]
    except FleetError:  # the broker is not up yet (the boards may come first)
        say("(could not ask the fleet's broker whether %s is already online)" % args.node_id)
        return
    if word != "online":
        return
    existing = None
    try:
        board = Board(args.port, args.timeout)
        try:
            existing = board.node_id()
        finally:
            board.close()
    except (ValueError, OSError):  # no MicroPython yet (a board fresh from the bag)
        pass
    if existing != args.node_id:
        raise ValueError("%s is online on another board (the fleet's broker says so), and the "
                         "board on %s is %s: give this board its own --node-id, or pull %s's "
                         "plug and try again about 90 s later (the broker keeps a switched-off "
                         "board's session that long, although roost status shows it down "
                         "sooner); --replace flashes it anyway (nothing was written)"
                         % (args.node_id, args.port,
                            "not configured" if existing is None else existing, args.node_id))


def flash(args: argparse.Namespace, say=print) -> dict:
    t0 = time.monotonic()
    if getattr(args, "wait_for", None) is None:
        # without a fleet to join: the node's own started line, printed once its UDP port is
        # open and its cores booted (main.py's "roost: started n07" comes before either, and
        # a node that failed right after it was reported up)
        args.wait_for = "roost: joined fleet" if getattr(args, "join_dir", None) \
            else "roost: started %s (boot" % args.node_id
    cfg, sec = make_config(args)
    if args.firmware:
        check_firmware(args.firmware, args.board)
    if getattr(args, "join_dir", None) and not getattr(args, "replace", False):
        _check_not_twin(args, say)  # a plan's node, or a board of an emulated fleet
    redact = Redactor(sec)
    with tempfile.TemporaryDirectory(prefix="roost-flash-") as tmp:
        tmpd = Path(tmp)
        os.chmod(tmpd, 0o700)
        if args.image:
            image = Path(args.image)
            m = build.check_image(image)
            if m.get("board") != args.board:
                raise ValueError("image %s was built for %s, not %s: rebuild with --board %s"
                                 % (image, m.get("board"), args.board, args.board))
        else:
            image = tmpd / "image"
            say("building the %s image" % args.board)
            m = build.build(args.board, image)
        staged = tmpd / "staged"
        staged.mkdir()
        (staged / "config.json").write_text(json.dumps(cfg, sort_keys=True))
        fd = os.open(staged / "secrets.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(sec, sort_keys=True))
        if args.firmware:
            write_firmware(args.port, args.board, args.firmware, say)
        files = [row[0] for row in m["files"]]
        extra = ["config.json", "secrets.json"]
        romfs = None
        if getattr(args, "romfs", False):  # the code goes to the ROMFS partition instead
            romfs = build.romfs_image(image / "slots" / "a")
            files = [f for f in files if not f.startswith("slots/a/roost/")]
            # which slot the partition holds: boot.py rewrites it after an update (romboot)
            (staged / "slots").mkdir()
            (staged / "slots" / "rom.json").write_text(json.dumps("a"))
            extra.append("slots/rom.json")
        expected = {row[0]: row[2] for row in m["files"] if row[0] in files}
        for name in extra:
            expected[name] = build.sha256_file(staged / name)
        board = Board(args.port, args.timeout)
        try:
            say("copying %d files (%s) and the config to %s"
                % (len(expected), "the code goes to ROMFS" if romfs is not None
                   else "%d bytes of .mpy" % m["mpy_bytes"], args.port))
            if romfs is not None:
                say("writing the code to the ROMFS partition (%d bytes)" % len(romfs))
                board.deploy_romfs(romfs)
            board.copy(image, files, staged, extra)
            board.verify(expected)
            say("verified %d files on the board (sha256)%s"
                % (len(expected), " and the ROMFS image" if romfs is not None else ""))
            result = {"port": args.port, "node_id": args.node_id, "files": len(expected),
                      "copied_s": round(time.monotonic() - t0, 3)}
            if args.firmware:
                result["firmware"] = Path(args.firmware).name
            host = board.host_info() if getattr(args, "join_dir", None) else None
            if args.no_follow:
                return result
            say("resetting %s and waiting for %r" % (args.node_id, args.wait_for))
            line = board.reset_and_follow(args.wait_for, say, redact)
        finally:
            board.close()
    result["line"] = line
    result["seconds"] = round(time.monotonic() - t0, 3)
    if getattr(args, "join_plan", False):  # a real board: nothing to register
        result["plan"] = str(args.join_dir)
    elif getattr(args, "join_dir", None):
        from roost.emulator.fleet import add_board

        pid, marker, cwd = host or (None, "", "")
        add_board(args.join_dir, args.node_id, cfg["udp_port"], pid, marker, cwd, args.port,
                  args.board)
        result["udp_port"] = cfg["udp_port"]
        result["fleet_dir"] = str(args.join_dir)
        say("registered %s in the fleet in %s (roost status --dir %s)"
            % (args.node_id, args.join_dir, args.join_dir))
    say("roost flash: %s is up on %s (%.1f s from start): %s"
        % (args.node_id, args.port, result["seconds"], line))
    return result


def _cmd_flash(args: argparse.Namespace) -> int:
    if args.json:
        result = flash(args, say=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(result, sort_keys=True))
    else:
        flash(args, say=lambda line: print(line, flush=True))
    return 0


def add_flash_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "flash",
        help="write a node image and its config to a board and wait until it runs",
        description="Copy a node image and config.json to a board with mpremote, verify the "
        "hashes on the board, reset it and follow its console until the node reports in. "
        "Secrets come from ROOST_FLEET_KEY / ROOST_WIFI_PASSWORD or --secrets-file, never from "
        "the command line, and are never printed.",
    )
    p.add_argument("--port", required=True,
                   help="serial port (/dev/ttyUSB0, COM3) or socket://127.0.0.1:7777")
    p.add_argument("--board", default=None,
                   help="board profile (default: the plan's with --join-dir, else esp32)")
    p.add_argument("--node-id", required=True, help="the node's id, e.g. n07")
    p.add_argument("--wifi", default="", metavar="SSID", help="Wi-Fi network name")
    p.add_argument("--broker", default=None,
                   help="mqtt://host:port of the fleet's broker (required without --join-dir)")
    p.add_argument("--join-dir", default=None, metavar="DIR",
                   help="join the fleet in DIR: an emulated one (roost emulate up --dir "
                   "DIR; the board is registered for roost status) or a real fleet's plan "
                   "(roost plan --dir DIR: its members, replica groups and board for this "
                   "node). Its name, broker, key and seeds go into the board's config, and "
                   "the default --wait-for becomes joined")
    p.add_argument("--udp-port", type=int, default=None,
                   help="the board's UDP port (default: 4210; with --join-dir a free one, "
                   "4210 on a real board of a plan)")
    p.add_argument("--fleet", default="roost", help="fleet name (default roost)")
    p.add_argument("--safe-pin", type=int, default=None,
                   help="GPIO held low at reset for safe mode (default: the board profile's, "
                        "0 = the BOOT button on devkits, 12 on the esp32-cam)")
    p.add_argument("--image", default=None, help="an image from 'roost build' (default: build)")
    p.add_argument("--firmware", default=None, metavar="FILE",
                   help="first erase the board and write this MicroPython firmware .bin with "
                   "esptool (a firmware for another chip is refused before anything is erased)")
    p.add_argument("--secrets-file", default=None, metavar="FILE",
                   help='JSON {"fleet_key": ..., "wifi_password": ...}')
    p.add_argument("--wait-for", default=None,
                   help="console text that means the node is up (default its node's 'roost: "
                   "started ID (boot', or 'roost: joined fleet' with --join-dir)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per step (default 60)")
    p.add_argument("--romfs", action="store_true",
                   help="the board's firmware has a ROMFS partition (MicroPython >= 1.25 built "
                   "with it): write the code there, where it runs in place and costs no heap")
    p.add_argument("--no-follow", action="store_true", help="do not reset and follow the log")
    p.add_argument("--replace", action="store_true",
                   help="flash a node id of the --join-dir fleet even though the broker says a "
                   "board with it is online (a board replaced while the broker still holds "
                   "its status)")
    p.add_argument("--json", action="store_true", help="one JSON summary on stdout")
    p.set_defaults(handler=_cmd_flash)
    return p
