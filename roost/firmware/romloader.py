"""The ESP32's serial bootloader, as a virtual board answers esptool. CPython-only.

A real ESP32 reset with GPIO0 held low runs the loader in its ROM instead of MicroPython:
SLIP-framed commands to read registers, load a "stub flasher" into RAM and write, erase
and checksum the SPI flash. ``roost flash --firmware`` drives it through esptool. A virtual
board has no ROM, so this class plays one (and the stub esptool uploads), close enough for
the real esptool to detect the chip (an ESP32 or an ESP32-S3), write a firmware and verify
it:

* the chip's flash is a bytearray kept in ``DIR.flash.bin`` beside the board's flash
  directory (the part of the flash MicroPython's filesystem does not use);
* erasing the filesystem's partition (``esptool erase-flash`` does) empties the board's
  files, as it empties a real board's littlefs;
* the firmware written is kept, not run: the virtual board goes on running the unix port.

Not played: secure boot, flash encryption, reading the flash back (READ_FLASH), and the
USB-serial of an ESP32-S3 (its loader answers on the UART, as through a USB-UART chip).

``feed(bytes)`` returns the bytes to send back; the flash image is read when a session
starts and written by ``close()``. A malformed frame gets an error answer and a count in
``stats``, never an exception.
"""

import hashlib
import struct
import zlib
from pathlib import Path

from roost.firmware.flash import BOOT_OFFSET

CHIP_MAGIC_REG = 0x40001000  # an ESP32 is known by what this register holds
FLASH_ID = 0x1640EF  # a 4 MB Winbond W25Q32, as on most ESP32 modules
SPIFLASH_RDID = 0x9F  # read the flash chip's ID
USR_BIT = 1 << 18  # in a SPI command register: run the command set up


class Chip:
    """Where one chip model keeps what esptool reads: registers differ between models."""

    def __init__(self, name, magic, chip_id, uart_clkdiv_reg, spi_base, usr2_offs, w0_offs,
                 mac_reg):
        self.name = name
        self.magic = magic  # CHIP_MAGIC_REG's value (ESP32), or None
        self.chip_id = chip_id  # what GET_SECURITY_INFO says (ESP32-S3 and later), or None
        self.uart_clkdiv_reg = uart_clkdiv_reg
        self.spi_cmd_reg = spi_base  # SPI1 (the flash): its USR bit runs a flash command
        self.spi_usr2_reg = spi_base + usr2_offs  # the command's opcode in its low bits
        self.spi_w0_reg = spi_base + w0_offs  # where a command leaves what it read
        self.mac_reg = mac_reg  # the factory MAC: 4 bytes here, the first 2 in the next word


# esptool's targets/esp32.py and esp32s3.py name the same addresses
CHIPS = {
    "esp32": Chip("ESP32", 0x00F01D83, None, 0x3FF40014, 0x3FF42000, 0x24, 0x80, 0x3FF5A004),
    "esp32s3": Chip("ESP32-S3", None, 9, 0x60000014, 0x60002000, 0x20, 0x58, 0x60007044),
}
UART_CLKDIV = 347  # a 40 MHz crystal at 115200 baud (the ESP32 computes it from this)

FLASH_SIZE = 4 * 1024 * 1024
FS_OFFSET = 0x200000  # MicroPython's ESP32 partition table: the filesystem from here

SYNC_VAL = 0x20120707  # a ROM answers SYNC with a non-zero value; the stub with 0
ERR_INVALID = 0x05  # "invalid message": an unsupported command
ERR_CHECKSUM = 0x07
ERR_BAD_DATA = 0x08

# command numbers (esptool's ESP_CMDS)
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
MEM_BEGIN, MEM_END, MEM_DATA = 0x05, 0x06, 0x07
SYNC, WRITE_REG, READ_REG = 0x08, 0x09, 0x0A
SPI_SET_PARAMS, SPI_ATTACH, CHANGE_BAUDRATE = 0x0B, 0x0D, 0x0F
FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, FLASH_DEFL_END = 0x10, 0x11, 0x12
SPI_FLASH_MD5, GET_SECURITY_INFO = 0x13, 0x14
ERASE_FLASH, ERASE_REGION, RUN_USER_CODE = 0xD0, 0xD1, 0xD3

_END, _ESC = 0xC0, 0xDB
# the fewest data bytes each command carries (fewer: answered "invalid", counted)
_MIN_DATA = {READ_REG: 4, WRITE_REG: 16, MEM_BEGIN: 16, MEM_END: 8, MEM_DATA: 16,
             FLASH_BEGIN: 16, FLASH_DATA: 16, FLASH_DEFL_BEGIN: 16, FLASH_DEFL_DATA: 16,
             SPI_FLASH_MD5: 8, ERASE_REGION: 8}
MAX_FRAME = 0x4000 + 64  # esptool's largest block (16 KB of flash data) and its header


def slip(packet: bytes) -> bytes:
    return (b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
            + b"\xc0")


def checksum(data: bytes) -> int:
    """The loader's data checksum: every byte xor-ed into 0xEF."""
    c = 0xEF
    for b in data:
        c ^= b
    return c


class RomLoader:
    """One download-mode session of a virtual ESP32: fed the serial bytes esptool sends."""

    def __init__(self, image: Path, mac: bytes, on_fs_erased=None, log=None,
                 chip: str = "esp32") -> None:
        self.chip = CHIPS[chip]
        self.image = Path(image)
        self.on_fs_erased = on_fs_erased or (lambda: None)
        self.log = log or (lambda line: None)
        self.flash = bytearray(b"\xff" * FLASH_SIZE)
        if self.image.is_file():
            self.flash[:] = self.image.read_bytes()[:FLASH_SIZE].ljust(FLASH_SIZE, b"\xff")
        else:  # a virtual board starts with MicroPython on it: the image's first byte, there
            self.flash[BOOT_OFFSET[chip]] = 0xE9
        self.dirty = False
        self.fs_erased = False
        self.stub = False
        c = self.chip
        self.regs = {c.uart_clkdiv_reg: UART_CLKDIV,
                     c.mac_reg: int.from_bytes(mac[2:6], "big"),
                     c.mac_reg + 4: int.from_bytes(mac[0:2], "big")}
        if c.magic is not None:
            self.regs[CHIP_MAGIC_REG] = c.magic
        self.frame = bytearray()
        self.in_frame = False
        self.escaped = False
        self.write_at = 0  # FLASH_BEGIN/FLASH_DATA: where block 0 goes
        self.block_size = 0
        self.inflate = None  # FLASH_DEFL_*: the decompressor, and where its output goes
        self.inflate_at = 0
        self.stats = {"commands": 0, "rx_rejected_oversize": 0, "rx_rejected_malformed": 0}

    # ---------------------------------------------------------------- serial bytes

    def feed(self, data: bytes) -> bytes:
        """Bytes from the host; returns the bytes the loader answers."""
        out = bytearray()
        for b in data:
            if not self.in_frame:
                if b == _END:
                    self.in_frame = True
                    self.frame.clear()
                continue  # noise between frames, as a UART gives: ignored
            if b == _END and not self.escaped:
                if self.frame:
                    out += self._command(bytes(self.frame))
                    self.frame.clear()
                continue  # an empty frame: the END that opened the next one
            if len(self.frame) >= MAX_FRAME:  # longer than any command: noise, dropped
                self.in_frame = False
                self.escaped = False
                self.frame.clear()
                self.stats["rx_rejected_oversize"] += 1
            elif self.escaped:
                self.escaped = False
                self.frame.append(_END if b == 0xDC else _ESC if b == 0xDD else b)
            elif b == _ESC:
                self.escaped = True
            else:
                self.frame.append(b)
        return bytes(out)

    def close(self) -> None:
        """The session ended (the host let go of the port): keep what was written."""
        if self.dirty:
            tmp = self.image.with_name(self.image.name + ".tmp")
            tmp.write_bytes(self.flash)
            tmp.replace(self.image)
            self.dirty = False

    # ---------------------------------------------------------------- commands

    def _reply(self, op: int, val: int = 0, data: bytes = b"", err: int = 0) -> bytes:
        status = bytes([1 if err else 0, err]) + (b"" if self.stub else b"\x00\x00")
        body = data + status
        return slip(struct.pack("<BBHI", 1, op, len(body), val) + body)

    def _command(self, pkt: bytes) -> bytes:
        if len(pkt) < 8 or pkt[0] != 0:
            return b""  # not a request: a real loader ignores it too
        _, op, size, chk = struct.unpack("<BBHI", pkt[:8])
        data = pkt[8:8 + size]
        self.stats["commands"] += 1
        if len(data) < _MIN_DATA.get(op, 0):
            self.stats["rx_rejected_malformed"] += 1
            return self._reply(op, err=ERR_INVALID)
        if op == SYNC:
            return self._reply(op, 0 if self.stub else SYNC_VAL) * 8
        if op == READ_REG:
            (addr,) = struct.unpack("<I", data[:4])
            return self._reply(op, self.regs.get(addr, 0))
        if op == WRITE_REG:
            for i in range(0, len(data) - 15, 16):
                addr, value, mask, _delay = struct.unpack("<IIII", data[i:i + 16])
                if addr == self.chip.spi_cmd_reg and value & USR_BIT:
                    self._spi_command()  # over as soon as it is given: reads back as 0
                else:
                    old = self.regs.get(addr, 0)
                    self.regs[addr] = (old & ~mask) | (value & mask)
            return self._reply(op)
        if op in (SPI_SET_PARAMS, SPI_ATTACH, CHANGE_BAUDRATE, FLASH_END, FLASH_DEFL_END,
                  MEM_BEGIN):
            return self._reply(op)
        if op in (MEM_DATA, FLASH_DATA, FLASH_DEFL_DATA):
            return self._data(op, data, chk)
        if op == MEM_END:
            run, entry = struct.unpack("<II", data[:8])
            out = self._reply(op)
            if not run and entry:  # esptool's stub starts and greets
                self.stub = True
                out += slip(b"OHAI")
                self.log("stub flasher running")
            return out
        if op in (FLASH_BEGIN, FLASH_DEFL_BEGIN):
            size, _blocks, block_size, offset = struct.unpack("<IIII", data[:16])
            if offset + size > FLASH_SIZE:
                return self._reply(op, err=ERR_BAD_DATA)
            self._erase(offset, size)
            self.write_at, self.block_size = offset, block_size
            self.inflate = zlib.decompressobj() if op == FLASH_DEFL_BEGIN else None
            self.inflate_at = offset
            self.log("writing %d bytes at 0x%x" % (size, offset))
            return self._reply(op)
        if op == SPI_FLASH_MD5:
            addr, size = struct.unpack("<II", data[:8])
            digest = hashlib.md5(self.flash[addr:addr + size])
            return self._reply(op, data=digest.digest() if self.stub
                               else digest.hexdigest().encode())
        if op == ERASE_FLASH and self.stub:
            self._erase(0, FLASH_SIZE)
            self.log("flash erased")
            return self._reply(op)
        if op == ERASE_REGION and self.stub:
            offset, size = struct.unpack("<II", data[:8])
            self._erase(offset, size)
            return self._reply(op)
        if op == RUN_USER_CODE and self.stub:
            return b""
        if op == GET_SECURITY_INFO and self.chip.chip_id is not None:
            # flags (no secure boot), flash_crypt_cnt, 7 key purposes, chip id, API version
            return self._reply(op, data=struct.pack("<IB7BII", 0, 0, *bytes(7),
                                                    self.chip.chip_id, 0))
        return self._reply(op, err=ERR_INVALID)  # GET_SECURITY_INFO: not on an ESP32's ROM

    def _spi_command(self) -> None:
        """esptool asks the flash chip directly for its ID (to learn its size); any other
        command (status, reset) reads as zero: ready, unprotected."""
        opcode = self.regs.get(self.chip.spi_usr2_reg, 0) & 0xFF
        self.regs[self.chip.spi_w0_reg] = FLASH_ID if opcode == SPIFLASH_RDID else 0

    def _data(self, op: int, data: bytes, chk: int) -> bytes:
        size, seq = struct.unpack("<II", data[:8])
        block = data[16:16 + size]
        if len(block) != size or checksum(block) != chk:
            return self._reply(op, err=ERR_CHECKSUM)
        if op == FLASH_DATA:
            self._write(self.write_at + seq * self.block_size, block)
        elif op == FLASH_DEFL_DATA:
            if self.inflate is None:
                return self._reply(op, err=ERR_BAD_DATA)
            try:
                plain = self.inflate.decompress(block)
            except zlib.error:
                return self._reply(op, err=ERR_BAD_DATA)
            self._write(self.inflate_at, plain)
            self.inflate_at += len(plain)
        return self._reply(op)

    def _write(self, at: int, data: bytes) -> None:
        if at + len(data) > FLASH_SIZE:
            data = data[:max(0, FLASH_SIZE - at)]
        if not data:
            return
        self.flash[at:at + len(data)] = data
        self.dirty = True
        self._touches_fs(at, len(data))

    def _erase(self, at: int, size: int) -> None:
        end = min(at + size, FLASH_SIZE)
        if end > at:
            self.flash[at:end] = b"\xff" * (end - at)
            self.dirty = True
            self._touches_fs(at, end - at)

    def _touches_fs(self, at: int, size: int) -> None:
        if at + size > FS_OFFSET and not self.fs_erased:
            self.fs_erased = True
            self.log("the filesystem partition was overwritten: the board's files are gone")
            self.on_fs_erased()
