"""romboot: a slot's files written into a ROMFS partition as the very bytes mpremote's
writer makes of them, the outgoing slot's image kept for a roll-back, and the marker that
says which slot the partition holds. The partition here is a bytearray behind the
``vfs.rom_ioctl`` calls a board answers (the virtual board's is tested end to end in
test_vboard.py)."""

import json
import os
from pathlib import Path

import pytest

from roost.firmware import build, romboot


class Partition:
    """A flash partition behind rom_ioctl: 2 its memory, 3 erase, 4 write, 5 done."""

    def __init__(self, size: int) -> None:
        self.mem = bytearray(b"\xff" * size)
        self.calls: list[int] = []
        self.fail_after_writes: int | None = None

    def __call__(self, op, *args):
        self.calls.append(op)
        if op == 1:
            return 1
        if op == 2:
            return memoryview(self.mem)
        if op == 3:
            self.mem[: args[1]] = b"\xff" * args[1]
            return 4
        if op == 4:
            if self.fail_after_writes is not None:
                if self.fail_after_writes == 0:
                    raise OSError("power cut")
                self.fail_after_writes -= 1
            off, data = args[1], bytes(args[2])
            self.mem[off:off + len(data)] = data
            return 0
        if op == 5:
            return 0
        raise AssertionError(op)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("img") / "esp32"
    build.build("esp32", out)
    return out


def _board(tmp_path: Path, image: Path) -> tuple[str, Partition, bytes]:
    """A board as `roost flash --romfs` leaves it: slot a's code only in its partition
    -> (flash root, partition, the flashed image)."""
    root = tmp_path / "flash"
    (root / "slots").mkdir(parents=True)  # no slots/a: its files are not copied
    (root / "slots" / "state.json").write_text(json.dumps(["a", "", -1, 0, ""]))
    romboot.write_marker(str(root), "a")
    part = Partition(256 * 1024)
    flashed = build.romfs_image(image / "slots" / "a")
    part.mem[:len(flashed)] = flashed
    return str(root), part, flashed


def test_the_image_is_the_one_mpremote_writes(tmp_path, image):
    part = Partition(256 * 1024)
    ref = build.romfs_image(image / "slots" / "a")
    n = romboot.write_tree(part, str(image / "slots" / "a"))
    assert n == len(ref) == romboot.image_len(str(image / "slots" / "a"))
    assert bytes(part.mem[:n]) == ref
    assert romboot.held_len(part.mem) == n and romboot.held_len(bytearray(64)) == 0
    assert part.calls.count(3) == 1 and part.calls[-1] == 5  # erased once, finished once
    with pytest.raises(OSError, match="does not fit"):
        romboot.write_tree(Partition(64 * 1024), str(image / "slots" / "a"))


def test_an_update_is_written_at_boot_and_a_roll_back_restores_the_flashed_code(tmp_path,
                                                                                 image):
    root, part, flashed = _board(tmp_path, image)
    assert romboot.ensure(root, "a", part) == ("rom", "")  # nothing to do
    assert part.calls == []
    # an update arrived in slot b as files (what OtaStager.finish leaves)
    v2 = tmp_path / "v2"
    build.build("esp32", v2, 1, "v2")
    os.rename(v2 / "slots" / "a", Path(root) / "slots" / "b")
    what, note = romboot.ensure(root, "b", part)
    assert what == "reset" and "slot b is now in the ROMFS partition" in note
    assert bytes(part.mem[:len(flashed)]) == build.romfs_image(Path(root) / "slots" / "b")
    assert romboot.read_marker(root) == "b"
    saved = Path(root) / "slots" / "a" / romboot.IMAGE  # the flashed code, kept
    assert saved.read_bytes() == flashed
    assert romboot.ensure(root, "b", part) == ("rom", "")  # after the reset: in place
    # the update does not join: bootsel rolls back to a, whose code comes back from rom.img
    what, note = romboot.ensure(root, "a", part)
    assert what == "reset" and bytes(part.mem[:len(flashed)]) == flashed
    assert romboot.read_marker(root) == "a"
    assert sorted(os.listdir(Path(root) / "slots" / "b")) == ["roost"]  # b's files stay


def test_a_power_cut_while_writing_leaves_unknown_and_the_next_boot_writes_again(tmp_path,
                                                                                 image):
    root, part, flashed = _board(tmp_path, image)
    b = Path(root) / "slots" / "b"
    b.mkdir()
    (b / "roost").mkdir()
    (b / "roost" / "x.mpy").write_bytes(b"M" * 5000)
    part.fail_after_writes = 1
    with pytest.raises(OSError):
        romboot.ensure(root, "b", part)
    assert romboot.read_marker(root) == ""  # neither a nor b: the partition is torn
    part.fail_after_writes = None
    assert romboot.ensure(root, "b", part)[0] == "reset"
    assert romboot.read_marker(root) == "b"
    # slot a's image was saved before the first erase, so a roll-back still has it
    assert (Path(root) / "slots" / "a" / romboot.IMAGE).read_bytes() == flashed


def test_no_partition_or_no_code_anywhere_means_the_filesystem_slot(tmp_path, image):
    root = _board(tmp_path, image)[0]
    assert romboot.ensure(root, "a") == ("none", "")  # CPython: no vfs.rom_ioctl at all
    romboot.write_marker(root, "")
    empty = Partition(64 * 1024)
    assert romboot.ensure(root, "a", empty) == ("none", "")  # erased, and nothing to write
    # no marker: flashed without --romfs, so the partition is not roost's to overwrite
    os.remove(Path(root) / romboot.MARKER)
    b = Path(root) / "slots" / "b"
    (b / "roost").mkdir(parents=True)
    (b / "roost" / "x.mpy").write_bytes(b"M" * 100)
    theirs = Partition(64 * 1024)
    theirs.mem[:5] = b"mine!"
    assert romboot.ensure(root, "b", theirs) == ("none", "") and theirs.calls == []
