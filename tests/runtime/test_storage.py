"""DirStorage: round trips, deletes, key escaping, crash leftovers (CPython and MicroPython)."""

from roost.node.storage import DirStorage, StorageError, key_to_name, name_to_key
from tests.runtime._tmp import remove_tree, scratch_dir


def test_put_get_delete_round_trip():
    d = scratch_dir("st")
    try:
        st = DirStorage(d)
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
        again = DirStorage(d)
        assert again.load_all() == {"a/17": {"x": [1, 2.5, None, True, "é"]}, "promised": [4, "n1"]}
        assert st.stats["puts"] == 4 and st.stats["deletes"] == 1
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


def test_leftover_temp_file_is_removed_and_old_value_kept():
    d = scratch_dir("st")
    try:
        st = DirStorage(d)
        st.put("promised", 1)
        with open(d + "/promised.t", "w") as f:
            f.write("[2, \"half")  # a write the crash interrupted before its rename
        with open(d + "/stranger.txt", "w") as f:
            f.write("not ours")
        again = DirStorage(d)
        assert again.stats["temp_removed"] == 1
        assert again.load_all() == {"promised": 1}
    finally:
        remove_tree(d)


def test_unreadable_value_raises_storage_error():
    d = scratch_dir("st")
    try:
        with open(d + "/bad.j", "w") as f:
            f.write("{not json")
        st = DirStorage(d)
        try:
            st.load_all()
            raise AssertionError("a corrupt value was loaded")
        except StorageError:
            pass
    finally:
        remove_tree(d)


def test_bad_path_is_a_value_error():
    for bad in ("", None):
        try:
            DirStorage(bad)
            raise AssertionError("accepted %r" % (bad,))
        except ValueError:
            pass
