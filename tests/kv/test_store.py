"""KvStore (the state machine) and KvReplica with an instant consensus; MicroPython-safe."""

import json

from roost.node.kv import (
    OP_APPEND,
    OP_CAS,
    OP_GET,
    OP_PUT,
    ST_ERROR,
    ST_OK,
    KvConfig,
    KvStore,
)

KEY = "fleet-key"


def _cmd(client, seq, op, key, a=None, b=None):
    return [client, seq, op, key, a, b]


def test_get_put_append_cas():
    s = KvStore()
    assert s.apply(1, _cmd("c1", 1, OP_GET, "k")) == [ST_OK, None]
    assert s.apply(2, _cmd("c1", 2, OP_PUT, "k", "a")) == [ST_OK, None]
    assert s.apply(3, _cmd("c1", 3, OP_APPEND, "k", "b")) == [ST_OK, None]
    assert s.apply(4, _cmd("c1", 4, OP_GET, "k")) == [ST_OK, "ab"]
    assert s.apply(5, _cmd("c1", 5, OP_APPEND, "new", "x")) == [ST_OK, None]
    assert s.get("new") == "x"
    # cas: old None means "key absent"
    assert s.apply(6, _cmd("c1", 6, OP_CAS, "lock", None, "c1")) == [ST_OK, True]
    assert s.apply(7, _cmd("c2", 1, OP_CAS, "lock", None, "c2")) == [ST_OK, False]
    assert s.apply(8, _cmd("c2", 2, OP_CAS, "lock", "c1", "c2")) == [ST_OK, True]
    assert s.get("lock") == "c2"
    assert s.apply(9, _cmd("c2", 3, OP_CAS, "k", "zz", "q")) == [ST_OK, False]
    assert s.get("k") == "ab"


def test_retry_is_applied_once():
    s = KvStore()
    assert s.apply(1, _cmd("c1", 7, OP_APPEND, "log", "x;")) == [ST_OK, None]
    # the same (client, seq) again, e.g. re-proposed after a lost reply
    assert s.apply(2, _cmd("c1", 7, OP_APPEND, "log", "x;")) == [ST_OK, None]
    assert s.get("log") == "x;"
    assert s.stats["duplicates"] == 1
    # the cached result is the original one, even for a read
    s.apply(3, _cmd("c2", 1, OP_GET, "log"))
    s.apply(4, _cmd("c1", 8, OP_PUT, "log", "y"))
    assert s.apply(5, _cmd("c2", 1, OP_GET, "log")) == [ST_OK, "x;"]
    # an older seq than the session's is stale and changes nothing
    assert s.apply(6, _cmd("c1", 7, OP_APPEND, "log", "x;")) == [ST_ERROR, "stale"]
    assert s.get("log") == "y"
    assert s.session("c1") == (8, [ST_OK, None])


def test_limits_are_definite_errors():
    s = KvStore(KvConfig(max_value_len=4, max_keys=2, max_key_len=3))
    assert s.apply(1, _cmd("c", 1, OP_PUT, "a", "12345")) == [ST_ERROR, "too_large"]
    assert s.apply(2, _cmd("c", 2, OP_PUT, "abcd", "1")) == [ST_ERROR, "too_large"]
    assert s.apply(3, _cmd("c", 3, OP_PUT, "a", "123")) == [ST_OK, None]
    assert s.apply(4, _cmd("c", 4, OP_APPEND, "a", "45")) == [ST_ERROR, "too_large"]
    assert s.get("a") == "123"
    assert s.apply(5, _cmd("c", 5, OP_PUT, "b", "1")) == [ST_OK, None]
    assert s.apply(6, _cmd("c", 6, OP_PUT, "c", "1")) == [ST_ERROR, "full"]
    assert s.apply(7, _cmd("c", 7, OP_CAS, "c", None, "1")) == [ST_ERROR, "full"]
    assert s.apply(8, _cmd("c", 8, OP_PUT, "b", "2")) == [ST_OK, None]
    assert sorted(s.data) == ["a", "b"]
    # an error result is cached like any other: a retry gets the same answer
    assert s.apply(9, _cmd("c", 8, OP_PUT, "b", "3")) == [ST_OK, None]
    assert s.get("b") == "2"


def test_garbage_commands_change_nothing():
    s = KvStore()
    s.apply(1, _cmd("c1", 1, OP_PUT, "k", "v"))
    before = json.dumps(s.snapshot())
    bad = [
        None, 5, "x", [], ["c1"], _cmd("bad id!", 1, OP_PUT, "k", "w"),
        _cmd("c1", -1, OP_PUT, "k", "w"), _cmd("c1", True, OP_PUT, "k", "w"),
        _cmd("c1", 1.5, OP_PUT, "k", "w"),
    ]
    for i, c in enumerate(bad):
        assert s.apply(10 + i, c) is None
    after = s.snapshot()
    after[1] = 1
    assert json.dumps(after) == before
    for c in (
        _cmd("c1", 2, 9, "k"), _cmd("c1", 3, OP_PUT, "k", 5), _cmd("c1", 4, OP_GET, ""),
        _cmd("c1", 5, OP_CAS, "k", 1, "x"), _cmd("c1", 6, OP_GET, "k", "x"),
        _cmd("c1", 7, OP_PUT, 3, "x"), _cmd("c1", 8, True, "k", "x"),
    ):
        assert s.apply(20, c) == [ST_ERROR, "malformed"]
    assert s.get("k") == "v"


def test_session_table_is_bounded_lru():
    s = KvStore(KvConfig(max_sessions=3))
    s.apply(1, _cmd("a", 1, OP_PUT, "k", "1"))
    s.apply(2, _cmd("b", 1, OP_PUT, "k", "2"))
    s.apply(3, _cmd("c", 1, OP_PUT, "k", "3"))
    s.apply(4, _cmd("a", 2, OP_GET, "k"))  # a is now the most recent
    s.apply(5, _cmd("d", 1, OP_PUT, "k", "4"))  # evicts b, the least recently used
    assert sorted(s.sessions) == ["a", "c", "d"]
    assert s.stats["evicted"] == 1
    # b is forgotten: its request again (a retry, or a replay of a captured datagram) is
    # refused, not applied a second time; so is anything at or below the floor it left
    assert s.floor == 1
    assert s.apply(6, _cmd("b", 1, OP_APPEND, "k", "!")) == [ST_ERROR, "expired"]
    assert s.apply(7, _cmd("e", 1, OP_APPEND, "k", "!")) == [ST_ERROR, "expired"]
    assert s.get("k") == "4" and s.stats["below_floor"] == 2 and len(s.sessions) == 3
    assert s.apply(8, _cmd("e", 2, OP_APPEND, "k", "!")) == [ST_OK, None]  # above it


def test_the_floor_of_forgotten_sessions_travels_in_the_snapshot():
    s = KvStore(KvConfig(max_sessions=1))
    s.apply(1, _cmd("a", 5, OP_PUT, "k", "1"))
    s.apply(2, _cmd("b", 3, OP_PUT, "k", "2"))  # evicts a, seq 5
    t = KvStore(KvConfig(max_sessions=1))
    t.restore(json.loads(json.dumps(s.snapshot())))
    assert t.floor == 5 and t.apply(3, _cmd("a", 5, OP_PUT, "k", "1")) == [ST_ERROR, "expired"]
    old = s.snapshot()[:4]  # a snapshot written before the floor (version 1) still reads
    old[0] = 1
    t.restore(old)
    assert t.floor == 0 and t.get("k") == "2"


def test_snapshot_restore_roundtrip_and_order():
    s = KvStore()
    keys = ["z", "a", "m", "b"]
    for i, k in enumerate(keys):
        s.apply(i + 1, _cmd("c%d" % (i % 3), i + 1, OP_PUT, k, "v" + k))
    snap = s.snapshot()
    assert [it[0] for it in snap[2]] == ["a", "b", "m", "z"]
    assert [it[0] for it in snap[3]] == ["c0", "c1", "c2"]
    text = json.dumps(snap)
    t = KvStore()
    t.restore(json.loads(text))
    assert json.dumps(t.snapshot()) == text
    assert t.get("m") == "vm"
    # sessions survive the snapshot: a retry after restore is not applied twice
    assert t.apply(9, _cmd("c0", 4, OP_PUT, "b", "again")) == [ST_OK, None]
    assert t.get("b") == "vb"
    # a store built in another insertion order snapshots to the same bytes
    u = KvStore()
    u.restore(json.loads(text))
    assert json.dumps(u.snapshot()) == text


def test_restore_rejects_garbage_and_keeps_state():
    s = KvStore()
    s.apply(1, _cmd("c", 1, OP_PUT, "k", "v"))
    for bad in (None, [], [1, 0, [], []][:3], [2, 0, [], []], [2, 0, [], [], -1],
                [1, 0, [], [], 0], [1, 0, [["k", 5]], []],
                [1, 0, [], [["c", 1, [0], 1]]], [1, 0, [], [["c", 1, [0, None], "x"]]],
                [1, "x", [], []]):
        try:
            s.restore(bad)
            raise AssertionError("restore accepted %r" % (bad,))
        except ValueError:
            pass
    assert s.get("k") == "v"
