"""DirStorage: round trips, deletes, key escaping, crash leftovers, torn records, one write
per step, compaction (CPython and MicroPython)."""

import json
import os

from roost.node.logstore import LogStorage
from roost.node.storage import DirStorage, FileStorage, StorageError, key_to_name, name_to_key
from tests.runtime._tmp import remove_tree, scratch_dir

# LogStorage truncates a write cut short on CPython, where it runs (boards use DirStorage;
# MicroPython's files have no truncate, and a torn tail is dropped at the next start)
MPY_SKIP = ("test_a_commit_cut_short_leaves_the_log_where_its_index_ends",)


def test_put_get_delete_round_trip():
    for cls in (LogStorage, FileStorage):
        _round_trip(cls)


def _round_trip(cls):
    d = scratch_dir("st")
    try:
        st = cls(d)
        assert st.get("promised") is None
        assert st.get("promised", 7) == 7
        st.put("promised", [3, "n2"])
        st.put("a/17", {"x": [1, 2.5, None, True, "é"]})
        st.put("snap", "")
        assert st.get("promised") == [3, "n2"]
        assert st.get("a/17") == {"x": [1, 2.5, None, True, "é"]}
        assert st.keys() == ["a/17", "promised", "snap"]
        st.put("promised", [4, "n1"])
        st.put("snap", None)
        st.put("never", None)
        assert st.items() == [("a/17", {"x": [1, 2.5, None, True, "é"]}), ("promised", [4, "n1"])]
        again = cls(d)
        assert again.load_all() == {"a/17": {"x": [1, 2.5, None, True, "é"]}, "promised": [4, "n1"]}
        assert st.stats["puts"] == 4 and st.stats["deletes"] == 1
    finally:
        remove_tree(d)


def test_boot_state_reads_each_value_when_asked_and_writes_big_lists_in_pieces():
    d = scratch_dir("st")
    try:
        st = DirStorage(d)
        big = [7, [["k%d" % i, "v" * 200] for i in range(40)], [[1, ["n1"]]]]
        st.put("snap", big)
        st.put("a/3", [1, "n1", ["b", [["put", "k", "v"]]]])
        st.put("_boot", 2)
        with open(d + "/snap.j") as f:
            assert json.loads(f.read()) == big  # one JSON text, written in pieces
        assert st.boot_state().get("nope", 5) == 5 and len(st.boot_state()) == 3
        state = st.boot_state()
        assert state.pop("_boot", 0) == 2 and "_boot" not in state
        assert sorted(state) == ["a/3", "snap"] and len(state) == 2
        st.put("a/3", [2, "n2", ["n"]])  # read when asked, not when the view was made
        assert state.get("a/3") == [2, "n2", ["n"]] and state.get("snap") == big
    finally:
        remove_tree(d)


def test_key_names_are_safe_and_invertible():
    for key in ("promised", "a/17", "../x", ".", "a b", "ü/€", "%41", "A-_z9"):
        name = key_to_name(key)
        for ch in name:
            assert ch.isalpha() or ch.isdigit() or ch in "_-%", (key, name)
        assert name_to_key(name) == key
    assert key_to_name("a/17") != key_to_name("a%2f17")
    for bad in ("", None, 3, "x" * 101):
        try:
            key_to_name(bad)
            raise AssertionError("accepted %r" % (bad,))
        except ValueError:
            pass
    for junk in ("%zz", "%4", "a.b", "%ff"):
        assert name_to_key(junk) is None


def test_leftovers_are_removed_and_old_layout_imported():
    d = scratch_dir("st")
    try:
        with open(d + "/promised.j", "w") as f:
            f.write("[1, \"n1\"]")  # the former one-file-per-key layout
        with open(d + "/a%2f3.j", "w") as f:
            f.write("[1, \"n1\", \"v\"]")
        with open(d + "/promised.t", "w") as f:
            f.write("[2, \"half")  # a write the crash interrupted before its rename
        with open(d + "/log.n", "w") as f:
            f.write("half a compaction")
        with open(d + "/stranger.txt", "w") as f:
            f.write("not ours")
        st = LogStorage(d)
        assert st.stats["temp_removed"] == 2 and st.stats["imported"] == 2
        assert st.load_all() == {"promised": [1, "n1"], "a/3": [1, "n1", "v"]}
        assert sorted(os.listdir(d)) == ["log", "stranger.txt"]
        assert LogStorage(d).load_all() == {"promised": [1, "n1"], "a/3": [1, "n1", "v"]}
    finally:
        remove_tree(d)


def test_a_rename_cut_between_remove_and_rename_keeps_the_new_value():
    """FAT's rename removes its target, then renames: a plug pulled in between leaves only
    the new value's .t file. Written whole (it ends with _put's newline), it is the value;
    a .t cut short, or one beside its .j, is a write that never happened."""
    d = scratch_dir("st")
    try:
        st = DirStorage(d, sync=False)
        st.put("promised", [1, "n1"])
        st.put("snap", [5, 9, [[0, ["n1"]]], "x"])
        os.rename(d + "/promised.j", d + "/promised.t")  # written whole, the .j removed
        with open(d + "/promised.t", "w") as f:
            f.write('[2, "n3"]\n')
        with open(d + "/a%2f4.t", "w") as f:
            f.write('[2, "n3", "v"]')  # cut before its newline, no .j: never happened
        with open(d + "/snap.t", "w") as f:
            f.write('[6, 9, [[0, ["n1"]]], "y"]\n')  # whole, but its .j is still there
        again = DirStorage(d, sync=False)
        assert again.stats["temp_promoted"] == 1 and again.stats["temp_removed"] == 2
        assert again.get("promised") == [2, "n3"]
        assert again.get("a/4") is None and again.get("snap") == [5, 9, [[0, ["n1"]]], "x"]
        assert sorted(os.listdir(d)) == ["promised.j", "snap.j"]
    finally:
        remove_tree(d)


def test_a_commit_cut_short_leaves_the_log_where_its_index_ends():
    """A write that fails halfway (a full disk) must not leave half a record for the next
    append to follow: the next boot would take the good records after it for damage."""
    d = scratch_dir("st")
    try:
        st = LogStorage(d, sync=False)
        st.put("a", 1)
        size = os.path.getsize(d + "/log")

        class Half:
            def __init__(self, f):
                self.f = f

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                raise OSError(28, "No space left on device")

            def __getattr__(self, name):
                return getattr(self.f, name)

        st._f = Half(st._f if st._f is not None else open(d + "/log", "ab"))
        st.stage("b", "x" * 100)
        try:
            st.commit()
            raise AssertionError("the write did not fail")
        except OSError:
            pass
        assert os.path.getsize(d + "/log") == size
        st.put("c", 3)  # the disk has room again
        assert LogStorage(d).load_all() == {"a": 1, "c": 3}
    finally:
        remove_tree(d)


def test_unreadable_value_raises_storage_error():
    d = scratch_dir("st")
    try:
        with open(d + "/bad.j", "w") as f:
            f.write("{not json")
        try:
            LogStorage(d).load_all()
            raise AssertionError("a corrupt value was loaded")
        except StorageError:
            pass
    finally:
        remove_tree(d)


def _log_bytes(d):
    with open(d + "/log", "rb") as f:
        return f.read()


def _write_log(d, data):
    with open(d + "/log", "wb") as f:
        f.write(data)


def test_torn_last_record_is_dropped_and_later_writes_survive():
    d = scratch_dir("st")
    try:
        st = LogStorage(d, sync=False)
        st.put("k", [1, "aaaa", 1])
        st.put("k", [2, "bbbb", 2])
        st.close()
        whole = _log_bytes(d)
        last = whole.rindex(b"\n", 0, len(whole) - 1) + 1
        for cut in range(last + 1, len(whole)):  # every way to tear the last record
            _write_log(d, whole[:cut])
            again = LogStorage(d, sync=False)
            assert again.stats["torn_dropped"] == 1, cut
            assert again.load_all() == {"k": [1, "aaaa", 1]}, cut
            again.put("j", 3)  # appended after good data, not after the torn bytes
            again.close()
            assert LogStorage(d, sync=False).load_all() == {"k": [1, "aaaa", 1], "j": 3}, cut
        flipped = bytearray(whole)
        flipped[-3] ^= 1  # a bad checksum on the last record: torn as well
        _write_log(d, bytes(flipped))
        assert LogStorage(d, sync=False).load_all() == {"k": [1, "aaaa", 1]}
    finally:
        remove_tree(d)


def test_damage_before_good_records_is_a_storage_error():
    d = scratch_dir("st")
    try:
        st = LogStorage(d, sync=False)
        st.put("a", 1)
        st.put("b", 2)
        st.close()
        data = bytearray(_log_bytes(d))
        data[12] ^= 1  # inside the first record, a good one follows
        _write_log(d, bytes(data))
        try:
            LogStorage(d, sync=False)
            raise AssertionError("a damaged log was loaded")
        except StorageError:
            pass
    finally:
        remove_tree(d)


def test_stage_commit_is_one_write_and_compaction_keeps_live_values():
    d = scratch_dir("st")
    try:
        st = LogStorage(d, sync=False)
        st.stage("promised", [1, "n1"])
        st.stage("a/1", [1, "n1", "v"])
        assert st.pending() == 2
        assert LogStorage(d, sync=False).load_all() == {}  # nothing durable before commit
        assert st.commit() == 2 and st.stats["commits"] == 1
        assert LogStorage(d, sync=False).load_all() == {"promised": [1, "n1"],
                                                        "a/1": [1, "n1", "v"]}
        big = "x" * 500
        for i in range(400):  # ~200 KB of overwritten slots: the log must compact
            st.stage("a/%d" % (i % 5 + 2), [i, big])
            st.stage("a/%d" % ((i + 3) % 5 + 2), None)
            st.commit()
        assert st.stats["compactions"] >= 1
        expect = {"promised": [1, "n1"], "a/1": [1, "n1", "v"]}
        for i in range(400):
            k = "a/%d" % (i % 5 + 2)
            expect[k] = [i, big]
            expect.pop("a/%d" % ((i + 3) % 5 + 2), None)
        assert st.load_all() == expect
        assert LogStorage(d, sync=False).load_all() == expect
        assert os.stat(d + "/log")[6] < 200000
    finally:
        remove_tree(d)


def test_bad_path_is_a_value_error():
    assert DirStorage is FileStorage
    for bad in ("", None):
        try:
            LogStorage(bad)
            raise AssertionError("accepted %r" % (bad,))
        except ValueError:
            pass
