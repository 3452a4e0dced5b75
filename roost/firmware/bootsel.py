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
    """The state list; the default (slot a, confirmed) when the file is missing or bad."""
    try:
        with open(_path(root, STATE_FILE)) as f:
            st = json.loads(f.read(512))
    except (OSError, ValueError):
        return default_state()
    return st if _valid(st) else default_state()


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


def slot_path(root, slot):
    return _path(root, "slots/" + slot)
