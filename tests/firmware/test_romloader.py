"""The virtual ESP32 ROM loader's framing and answers (esptool drives it end to end in
test_vboard.py)."""

import hashlib
import random
import struct
import zlib
from pathlib import Path

from roost.firmware import romloader as rl


def _cmd(op: int, data: bytes = b"", chk: int = 0) -> bytes:
    return rl.slip(struct.pack("<BBHI", 0, op, len(data), chk) + data)


def _answers(raw: bytes) -> list[tuple[int, int, bytes]]:
    """Decoded reply frames: (op, value, data after the header)."""
    out = []
    for frame in raw.split(b"\xc0"):
        if not frame:
            continue
        pkt = frame.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
        if pkt == b"OHAI":
            out.append((-1, 0, pkt))
            continue
        _, op, size, val = struct.unpack("<BBHI", pkt[:8])
        out.append((op, val, pkt[8:8 + size]))
    return out


def _loader(tmp_path: Path, erased: list | None = None, chip: str = "esp32") -> rl.RomLoader:
    return rl.RomLoader(tmp_path / "chip.bin", b"\x24\x0a\xc4\x01\x02\x03",
                        (lambda: erased.append(1)) if erased is not None else None, chip=chip)


def _reg(ld: rl.RomLoader, addr: int) -> int:
    [(_, val, _)] = _answers(ld.feed(_cmd(rl.READ_REG, struct.pack("<I", addr))))
    return val


def _set(ld: rl.RomLoader, addr: int, value: int) -> None:
    ld.feed(_cmd(rl.WRITE_REG, struct.pack("<IIII", addr, value, 0xFFFFFFFF, 0)))


def test_registers_sync_and_unsupported_commands_as_an_esp32_rom_answers(tmp_path):
    ld = _loader(tmp_path)
    syncs = _answers(ld.feed(_cmd(rl.SYNC, b"\x07\x07\x12\x20" + b"\x55" * 32)))
    assert len(syncs) == 8 and all(v == rl.SYNC_VAL for _, v, _ in syncs)
    [(op, val, status)] = _answers(ld.feed(_cmd(rl.READ_REG, struct.pack("<I", 0x40001000))))
    assert (op, val, status) == (rl.READ_REG, 0x00F01D83, b"\x00\x00\x00\x00")
    [(_, _, status)] = _answers(ld.feed(_cmd(rl.GET_SECURITY_INFO)))
    assert status == b"\x01\x05\x00\x00"  # not on an ESP32's ROM: esptool reads the magic
    # the flash chip's ID, through the SPI registers as esptool asks for it
    chip = ld.chip
    _set(ld, chip.spi_usr2_reg, 0x7000009F)
    _set(ld, chip.spi_cmd_reg, rl.USR_BIT)
    assert (_reg(ld, chip.spi_w0_reg), _reg(ld, chip.spi_cmd_reg)) == (rl.FLASH_ID, 0)
    assert struct.pack(">II", _reg(ld, chip.mac_reg + 4), _reg(ld, chip.mac_reg))[2:] == \
        b"\x24\x0a\xc4\x01\x02\x03"  # esptool's read_mac


def test_an_esp32_s3_says_its_chip_id_and_keeps_its_registers_elsewhere(tmp_path):
    ld = _loader(tmp_path, chip="esp32s3")
    [(_, _, data)] = _answers(ld.feed(_cmd(rl.GET_SECURITY_INFO)))
    assert len(data) == 24 and struct.unpack("<IBBBBBBBBII", data[:20])[9] == 9
    _set(ld, 0x60002020, 0x7000009F)  # esptool's esp32s3.py: SPI_USR2, SPI_W0
    _set(ld, 0x60002000, rl.USR_BIT)
    assert _reg(ld, 0x60002058) == rl.FLASH_ID and _reg(ld, 0x40001000) == 0


def test_stub_compressed_write_survives_split_frames_and_escapes_and_checks_checksums(tmp_path):
    erased: list = []
    ld = _loader(tmp_path, erased)
    got = _answers(ld.feed(_cmd(rl.MEM_END, struct.pack("<II", 0, 0x4009F000))))
    assert got[-1] == (-1, 0, b"OHAI") and ld.stub
    payload = bytes(range(256)) * 40 + b"\xc0\xdb" * 100  # bytes SLIP must escape
    comp = zlib.compress(payload, 9)
    ld.feed(_cmd(rl.FLASH_DEFL_BEGIN, struct.pack("<IIIII", len(payload), 1, 0x4000, 0x1000, 0)))
    bad = _cmd(rl.FLASH_DEFL_DATA, struct.pack("<IIII", len(comp), 0, 0, 0) + comp,
               rl.checksum(comp) ^ 1)
    [(_, _, status)] = _answers(ld.feed(bad))
    assert status == b"\x01\x07"  # the stub's two status bytes: a checksum error
    good = _cmd(rl.FLASH_DEFL_DATA, struct.pack("<IIII", len(comp), 0, 0, 0) + comp,
                rl.checksum(comp))
    out = b"".join(ld.feed(good[i:i + 7]) for i in range(0, len(good), 7))
    assert _answers(out) == [(rl.FLASH_DEFL_DATA, 0, b"\x00\x00")]
    md5 = _answers(ld.feed(_cmd(rl.SPI_FLASH_MD5, struct.pack("<IIII", 0x1000, len(payload),
                                                               0, 0))))
    assert md5[0][2][:16] == hashlib.md5(payload).digest()
    assert erased == []  # the firmware's region is not the filesystem's
    ld.feed(_cmd(rl.ERASE_REGION, struct.pack("<II", rl.FS_OFFSET, 4096)))
    ld.feed(_cmd(rl.ERASE_FLASH))
    assert erased == [1]  # once per session
    ld.close()
    assert (tmp_path / "chip.bin").read_bytes() == b"\xff" * rl.FLASH_SIZE


def test_endless_bytes_without_a_frame_end_are_dropped_not_kept(tmp_path):
    ld = _loader(tmp_path)
    ld.feed(b"\xc0" + b"\x55" * (rl.MAX_FRAME * 3))
    ld.feed(b"\xc0" + b"\xdb\xdc" * (rl.MAX_FRAME * 2))  # escaped bytes count too
    assert ld.stats["rx_rejected_oversize"] == 2 and len(ld.frame) == 0
    syncs = _answers(ld.feed(_cmd(rl.SYNC, b"\x07\x07\x12\x20" + b"\x55" * 32)))
    assert len(syncs) == 8  # the loader still answers the next command


def test_short_and_random_frames_get_answers_not_exceptions(tmp_path):
    """Every command cut short, then random bytes whole and one at a time: answered (or
    ignored), counted, and the loader goes on; no write lands outside the flash."""
    erased: list = []
    ld = _loader(tmp_path, erased)
    ld.feed(_cmd(rl.MEM_END, struct.pack("<II", 0, 0x4009F000)))  # the stub, with more ops
    for op in sorted(rl._MIN_DATA):
        [(got_op, _, status)] = _answers(ld.feed(_cmd(op, b"\x01\x02")))
        assert got_op == op and status[:2] == b"\x01\x05", op
    assert ld.stats["rx_rejected_malformed"] == len(rl._MIN_DATA)
    # a block for far beyond the flash's end is dropped, and the files are not erased
    ld.feed(_cmd(rl.FLASH_BEGIN, struct.pack("<IIIII", 16, 1, 16, 0x1000, 0)))
    far = _cmd(rl.FLASH_DATA, struct.pack("<IIII", 16, 0x100000, 0, 0) + bytes(16),
               rl.checksum(bytes(16)))
    ld.feed(far)
    assert erased == []
    rnd = random.Random(4)
    for _ in range(200):
        junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 80)))
        ld.feed(b"\xc0" + junk + b"\xc0")
        for b in junk:
            ld.feed(bytes([b]))
    assert len(_answers(ld.feed(_cmd(rl.SYNC, b"\x07\x07\x12\x20" + b"\x55" * 32)))) >= 8


def test_a_fresh_board_keeps_its_firmware_when_esptool_writes_elsewhere(tmp_path):
    """A virtual board starts with MicroPython on it: writing a filesystem image leaves the
    firmware's first byte where the boot ROM looks, as on a real board."""
    ld = _loader(tmp_path)
    ld.feed(_cmd(rl.FLASH_BEGIN, struct.pack("<IIII", 4096, 1, 4096, 0x300000)))
    ld.close()
    chip = (tmp_path / "chip.bin").read_bytes()
    assert chip[0x1000] == 0xE9 and chip[0x300000:0x301000] == b"\xff" * 4096
