"""Which code slot a board boots, with trial boots and roll-back. MicroPython-safe.

The board's node code lives in two slots beside each other on flash, ``slots/a`` and
``slots/b``; ``slots/state.json`` says which one runs. This module is the fixed part of the
boot chain: ``roost build`` also places it at the flash root as ``bootsel`` (it is never
replaced by an over-the-air update, so a bad update cannot break the way back). It imports
nothing from ``roost``.

State (a JSON list, replaced atomically by write-new-then-rename)::

    [active, previous, trial_boots_left, serial, version]

``trial_boots_left`` is -1 once the active slot is confirmed (it reported "joined"); an
update switches with a small number of trial boots; every boot of an unconfirmed slot spends
one; a boot that finds none left rolls back to ``previous``.
"""

import json
import os

SLOTS = ("a", "b")
STATE_FILE = "slots/state.json"
CONFIRMED = -1


def _path(root, rel):
    if not root:
        return rel
    return root + rel if root.endswith("/") else root + "/" + rel


def default_state():
    return ["a", "", CONFIRMED, 0, ""]


def _valid(st):
    if not isinstance(st, list) or len(st) != 5:
        return False
    active, previous, trial, serial, version = st
    if active not in SLOTS or previous not in SLOTS + ("",) or previous == active:
        return False
    if isinstance(trial, bool) or not isinstance(trial, int) or not CONFIRMED <= trial <= 9:
        return False
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        return False
    return isinstance(version, str)


def read_state(root=""):
    """The state list; the default (slot a, confirmed) when the file is missing or bad.

    A plug pulled between write_state's remove and rename (a filesystem whose rename does
    not replace) leaves only the new file: it is read then, or the serial would fall back
    to 0 and an old signed update be taken again."""
    for name in (STATE_FILE, STATE_FILE + ".new"):
        try:
            with open(_path(root, name)) as f:
                st = json.loads(f.read(512))
        except (OSError, ValueError):
            continue
        if _valid(st):
            return st
    return default_state()


def write_state(root, st):
    """Replace the state file atomically: write a new file, then rename it over the old one."""
    if not _valid(st):
        raise ValueError("bad slot state: %r" % (st,))
    path = _path(root, STATE_FILE)
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(json.dumps(st))
    try:
        os.rename(tmp, path)
    except OSError:  # a filesystem whose rename does not replace (FAT): remove, then rename
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)


def other(slot):
    return "b" if slot == "a" else "a"


def select(root=""):
    """Called once per boot by boot.py: spend a trial boot or roll back.

    Returns (slot, note) where note is "" or one line for the console.
    """
    st = read_state(root)
    active, previous, trial = st[0], st[1], st[2]
    if trial == CONFIRMED:
        return active, ""
    if trial > 0:
        st[2] = trial - 1
        write_state(root, st)
        return active, ""
    if not previous:  # nothing to go back to: keep running, confirmed
        st[2] = CONFIRMED
        write_state(root, st)
        return active, ""
    write_state(root, [previous, active, CONFIRMED, st[3], "rollback"])
    return previous, "roost: update %s did not join in time; rolled back to slot %s" % (
        st[4] or "?", previous)


def give_up(root=""):
    """The running slot is an update on trial that cannot start: its code does not load,
    or it refuses the board's config.json (an option it does not know). Roll back now, as
    select() does once its trial boots are spent: in safe mode the board never reached the
    join deadline, and sat on trial until two power cycles. -> the console line, or ""
    when the slot is confirmed or has nothing to go back to. The caller resets."""
    st = read_state(root)
    if st[2] == CONFIRMED or not st[1]:
        return ""
    write_state(root, [st[1], st[0], CONFIRMED, st[3], "rollback"])
    return "roost: update %s cannot start in slot %s; rolled back to slot %s" % (
        st[4] or "?", st[0], st[1])


def cannot_load(slot, e, root=""):
    """boot.py's last word when the slot's code does not load: roll back and reset an
    update on trial (give_up), else safe mode, said in one sentence."""
    why = "%s: %s" % (type(e).__name__, e)
    note = give_up(root)
    if note:
        print("%s (%s)" % (note, why))
        import machine

        machine.reset()
    print("roost: safe mode: the node image in slot %s does not load (%s); flash it again "
          "and reset the board." % (slot, why))


def rom_slot(root, slot):
    """Where slot's code runs from on a board flashed with --romfs (``slots/rom.json``
    names the slot whose code its ROMFS partition holds): "rom" when the partition holds
    it, "write" when romboot must put it there first, "none" on any other board."""
    try:
        with open(_path(root, "slots/rom.json")) as f:
            held = f.read(8)
    except OSError:
        return "none"
    return "rom" if held == '"%s"' % slot else "write"


def start(root=""):
    """boot.py's work before boardlib: pick the slot (select), put its code in the ROMFS
    partition of a board flashed with --romfs when the slot changed (romboot writes it and
    resets the board, so the firmware mounts it), and put the code on sys.path. -> slot.
    Here rather than in boot.py: boot.py is compiled from source at every boot, in the
    young heap a board's node needs whole."""
    import sys

    slot, note = select(root)
    if note:
        print(note)
    where = "none"
    try:
        where = rom_slot(root, slot)
        if where == "write":
            import romboot

            where, note = romboot.ensure(root, slot)
            if note:
                print(note)
            if where == "reset":
                refund(root)  # the reset is not the new code's: no trial boot spent
                import machine

                machine.reset()
    except Exception as e:  # the partition could not be written: boot goes on
        print("roost: the ROMFS partition could not be written (%s); slot %s runs from "
              "the filesystem" % (e, slot))
    sys.path.insert(0, "/rom" if where == "rom" else _path(root, "slots/" + slot))
    return slot


def refund(root=""):
    """Give back the trial boot select() spent, for a reset that was not the code's doing
    (romboot writing the slot's code into the ROMFS partition)."""
    st = read_state(root)
    if CONFIRMED < st[2] < 9:
        st[2] += 1
        write_state(root, st)


def slot_path(root, slot):
    return _path(root, "slots/" + slot)
