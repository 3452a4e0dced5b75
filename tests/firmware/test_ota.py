"""Over-the-air update: verify, stage beside the running copy, switch, confirm, roll back,
and refuse tampered, replayed or misdirected bundles. MicroPython-safe (runs under pytest
and tests/mpy_runner.py against a scratch directory)."""

import json

from roost.firmware import bootsel, ota
from tests.firmware._tmp import TmpDir, read, write

KEY = "fleet-key-for-tests"


def _bundle(serial, files, key=KEY, board="esp32"):
    m = ota.make_manifest(files, serial, "v%d" % serial, board)
    return m, ota.sign(key, m)


def _flashed(d):
    """A board as 'roost flash' leaves it: code in slot a, no state file."""
    write(d + "/slots/a/roost/app.py", "VERSION = 1\n")
    return d


NEW = {"roost/app.py": b"VERSION = 2\n", "roost/sub/mod.py": b"x = 1\n", "roost/empty.py": b""}


def test_no_state_boots_slot_a():
    with TmpDir() as d:
        assert bootsel.select(d) == ("a", "")
        assert bootsel.read_state(d) == bootsel.default_state()


def test_update_switches_then_confirm_keeps_it():
    with TmpDir() as d:
        _flashed(d)
        m, tag = _bundle(1, NEW)
        assert ota.apply(d, KEY, m, tag, NEW, chunk=5) is None
        assert read(d + "/slots/b/roost/app.py") == "VERSION = 2\n"
        assert read(d + "/slots/b/roost/empty.py") == ""
        assert read(d + "/slots/a/roost/app.py") == "VERSION = 1\n"  # previous copy kept
        st = bootsel.read_state(d)
        assert st[:3] == ["b", "a", ota.TRIAL_BOOTS] and st[3] == 1
        assert bootsel.select(d) == ("b", "")  # first trial boot
        assert ota.in_trial(d)
        assert ota.confirm(d) is True and not ota.in_trial(d)
        for _ in range(5):
            assert bootsel.select(d) == ("b", "")
        assert ota.confirm(d) is False


def test_an_update_on_trial_is_not_replaced_by_the_next_one():
    """v2 switched in and on trial, v3 arrives: it is refused, so slot a keeps v1, the last
    code known to work. If v2 fails to join, the board rolls back to v1, not to v2."""
    with TmpDir() as d:
        _flashed(d)
        m2, tag2 = _bundle(2, NEW)
        assert ota.apply(d, KEY, m2, tag2, NEW) is None
        assert bootsel.select(d) == ("b", "")  # v2 on trial
        v3 = {"roost/app.py": b"VERSION = 3\n"}
        m3, tag3 = _bundle(3, v3)
        assert ota.apply(d, KEY, m3, tag3, v3) == "on_trial"
        assert read(d + "/slots/a/roost/app.py") == "VERSION = 1\n"
        for _ in range(ota.TRIAL_BOOTS):
            bootsel.select(d)
        assert bootsel.select(d)[0] == "a"  # rolled back to v1
        assert ota.apply(d, KEY, m3, tag3, v3) is None  # confirmed again: v3 is taken
        assert bootsel.read_state(d)[:2] == ["b", "a"]


def test_trial_boots_run_out_then_roll_back():
    with TmpDir() as d:
        _flashed(d)
        m, tag = _bundle(3, NEW)
        assert ota.apply(d, KEY, m, tag, NEW) is None
        seen = [bootsel.select(d) for _ in range(ota.TRIAL_BOOTS)]
        assert seen == [("b", "")] * ota.TRIAL_BOOTS
        slot, note = bootsel.select(d)
        assert slot == "a" and "rolled back" in note and "v3" in note
        assert bootsel.select(d) == ("a", "")
        # the same bundle again is stale now; a newer one is accepted into slot b
        assert ota.apply(d, KEY, m, tag, NEW) == "stale"
        m4, tag4 = _bundle(4, NEW)
        assert ota.apply(d, KEY, m4, tag4, NEW) is None
        assert bootsel.read_state(d)[:2] == ["b", "a"]


def test_a_reset_for_the_romfs_partition_spends_no_trial_boot():
    with TmpDir() as d:
        _flashed(d)
        m, tag = _bundle(5, NEW)
        assert ota.apply(d, KEY, m, tag, NEW) is None
        assert bootsel.select(d) == ("b", "")
        bootsel.refund(d)  # boot.py: romboot wrote slot b's code and resets
        assert bootsel.read_state(d)[2] == ota.TRIAL_BOOTS
        seen = [bootsel.select(d) for _ in range(ota.TRIAL_BOOTS)]
        assert seen == [("b", "")] * ota.TRIAL_BOOTS and bootsel.select(d)[0] == "a"
        bootsel.refund(d)  # confirmed (rolled back): nothing to give back
        assert bootsel.read_state(d)[2] == bootsel.CONFIRMED


def test_missed_join_deadline_rolls_back():
    with TmpDir() as d:
        _flashed(d)
        m, tag = _bundle(1, NEW)
        assert ota.apply(d, KEY, m, tag, NEW) is None
        slot, _ = bootsel.select(d)
        w = ota.JoinWatch(1000, 5000, ota.in_trial(d))
        assert w.next_deadline_ms() == 6000
        assert not w.expired(5999) and w.expired(6000)
        assert ota.rollback(d) is True
        assert bootsel.select(d) == ("a", "")
        w2 = ota.JoinWatch(0, 5000, ota.in_trial(d))
        assert w2.next_deadline_ms() is None and not w2.expired(10 ** 9)
        w3 = ota.JoinWatch(0, 10, True)
        w3.joined_at(5)
        assert not w3.expired(100) and w3.joined


def test_tampered_bundles_are_refused_and_running_code_untouched():
    with TmpDir() as d:
        _flashed(d)
        m, tag = _bundle(1, NEW)
        bad_tag = bytes([tag[0] ^ 1]) + tag[1:]
        assert ota.apply(d, KEY, m, bad_tag, NEW) == "bad_signature"
        with TmpDir() as d2:
            _flashed(d2)
            assert ota.apply(d2, KEY, m, ota.sign("wrong-key", m), NEW) == "bad_signature"
            evil = dict(NEW)
            evil["roost/app.py"] = b"VERSION = 666\n"  # same length, other bytes
            assert ota.apply(d2, KEY, m, tag, evil) == "hash_mismatch"
            longer = dict(NEW)
            longer["roost/app.py"] = NEW["roost/app.py"] + b"#"
            assert ota.apply(d2, KEY, m, tag, longer) == "hash_mismatch"
            shorter = dict(NEW)
            shorter["roost/app.py"] = b"V"
            assert ota.apply(d2, KEY, m, tag, shorter) == "unknown_file"  # next file came early
            edited = m.replace(b"v1", b"v9")
            assert ota.apply(d2, KEY, edited, tag, NEW) == "bad_signature"
            assert bootsel.read_state(d2) == bootsel.default_state()
            assert read(d2 + "/slots/a/roost/app.py") == "VERSION = 1\n"
            assert not ota._exists(d2 + "/slots/b")
            assert not ota._exists(d2 + "/" + ota.STAGING)


def test_signed_but_unsafe_manifests_are_refused():
    with TmpDir() as d:
        _flashed(d)
        for path in ("../boot.py", "/boot.py", "roost//x.py", "roost/./x.py", "a b.py", ""):
            m, tag = _bundle(1, {path: b"x"})
            st = ota.OtaStager(d, KEY)
            assert st.begin(m, tag) == "bad_path", path
        m, tag = _bundle(1, NEW, board="esp32-s3")
        assert ota.OtaStager(d, KEY).begin(m, tag) == "wrong_board"
        raw = json.dumps({"format": 1, "board": "esp32", "serial": 1, "version": "x",
                          "files": [["a.py", 10 ** 9, "0" * 64]]}).encode()
        assert ota.OtaStager(d, KEY).begin(raw, ota.sign(KEY, raw)) == "too_large"
        for raw in (b"", b"[]", b"{\"format\": 2}", b"\xff\xfe", b"{" * 20):
            st = ota.OtaStager(d, KEY)
            assert st.begin(raw, ota.sign(KEY, raw)) in ("malformed", "too_large"), raw
        st = ota.OtaStager(d, KEY)
        assert st.begin(b"{}", b"short") == "bad_signature"
        assert st.begin("text", b"x") == "malformed"
        assert st.stats["rx_rejected_bad_signature"] == 1
        assert bootsel.read_state(d) == bootsel.default_state()


def test_out_of_order_and_unknown_pieces_are_refused():
    with TmpDir() as d:
        _flashed(d)
        m, tag = _bundle(1, NEW)
        st = ota.OtaStager(d, KEY)
        assert st.write("roost/app.py", 0, b"x") == "not_started"
        assert st.finish() == "not_started"
        assert st.begin(m, tag) is None and st.busy
        assert st.write("roost/app.py", 3, b"x") == "out_of_order"
        assert not st.busy
        assert st.begin(m, tag) is None
        assert st.write("roost/zzz.py", 0, b"x") == "unknown_file"
        assert st.begin(m, tag) is None
        assert st.finish() == "incomplete"
        assert st.stats["rx_rejected_incomplete"] == 1


def test_bad_state_file_falls_back_to_slot_a():
    with TmpDir() as d:
        for text in ("garbage", "[]", '["c", "", -1, 0, ""]', '["a", "a", -1, 0, ""]',
                     '["a", "b", 99, 0, ""]', '["a", "b", -1, -4, ""]'):
            write(d + "/" + bootsel.STATE_FILE, text)
            assert bootsel.select(d) == ("a", ""), text
        try:
            bootsel.write_state(d, ["z", "", -1, 0, ""])
            raised = False
        except ValueError:
            raised = True
        assert raised


def test_a_plug_pulled_between_remove_and_rename_keeps_the_serial():
    """On a filesystem whose rename does not replace, write_state removes the old file and
    then renames the new one: pulled in between, only the new file is left. Its serial
    holds, so an old signed bundle stays refused."""
    import os

    with TmpDir() as d:
        _flashed(d)
        m5, tag5 = _bundle(5, NEW)
        assert ota.apply(d, KEY, m5, tag5, NEW) is None
        st = bootsel.read_state(d)
        write(d + "/" + bootsel.STATE_FILE + ".new", json.dumps(st))
        os.remove(d + "/" + bootsel.STATE_FILE)
        assert bootsel.read_state(d) == st
        ota.confirm(d)
        m3, tag3 = _bundle(3, NEW)
        assert ota.apply(d, KEY, m3, tag3, NEW) == "stale"


def test_paths_checked():
    assert ota.check_path("roost/common/prng.mpy")
    for p in ("..", "a/../b", "/x", "x/", "", "a\\b", 5, "x" * 200):
        assert not ota.check_path(p), p
