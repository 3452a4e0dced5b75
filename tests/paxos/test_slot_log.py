"""The packed log window against a plain dict, under random puts, overwrites, chosen
marks and snapshots (which slide the live records down in place); and its budget: with a
reserve, a record that would need a buffer beyond it is refused unless forced.
Runs on CPython and on MicroPython (the gate)."""

from roost.common.prng import Prng
from roost.node.paxos_log import CHUNK, SlotLog


def _value(rng, slot):
    k = rng.randrange(10)
    if k == 0:
        return ["n"]
    if k == 1:
        return ["c", ["n1", "n2", "n%d" % (3 + slot % 5)]]
    size = 1 + rng.randrange(400)
    if k == 2:  # now and then a record larger than a buffer: it gets one of its own
        size = CHUNK + rng.randrange(600)
    return ["b", [[slot, "x" * size]]]


def _check(log, model):
    assert len(log) == len(model)
    assert list(log) == sorted(model)
    for s in model:
        rnd, node, value, chosen = model[s]
        got = log.get(s)
        assert got is not None, s
        assert got[:4] == (rnd, node, value, chosen), (s, got[:4], model[s])
        assert log.state(s) == chosen
    live = 0
    for s in model:
        live += log.get(s)[4]
    assert live <= log.live_bytes()
    # what a snapshot at a slot would free: every live byte at the top, none below the base
    assert log.bytes_upto(log.base - 1) == 0
    assert log.bytes_upto(log.base + 100000) == log.live_bytes()
    if model:
        mid = sorted(model)[len(model) // 2]
        assert 0 < log.bytes_upto(mid) <= log.live_bytes()


def _run(seed, reserve):
    rng = Prng("slotlog-%d" % seed)
    log = SlotLog(400, reserve)
    model = {}
    top = 0
    for step in range(700):
        op = rng.randrange(10)
        if op < 6:  # a new slot a little past the last one, or an old one rewritten
            slot = top + 1 + rng.randrange(3) if op < 4 or not model else \
                sorted(model)[rng.randrange(len(model))]
            node = "n%d" % rng.randrange(4)
            rnd = rng.randrange(1 << 20)
            value = _value(rng, slot)
            chosen = rng.randrange(2)
            force = rng.randrange(4) == 0
            ok = log.put(slot, rnd, node, value, chosen, force)
            if ok:
                model[slot] = (rnd, node, value, chosen)
                top = max(top, slot)
            else:  # refused: past the window, or (with a reserve) no room without a buffer
                assert not force or slot < log.base
                assert slot - log.base >= 400 or reserve
        elif op < 8 and model:
            slot = sorted(model)[rng.randrange(len(model))]
            log.set_chosen(slot)
            m = model[slot]
            model[slot] = (m[0], m[1], m[2], 1)
        elif model:  # a snapshot somewhere in the window
            keys = sorted(model)
            upto = keys[rng.randrange(len(keys))]
            gone = log.drop_upto(upto)
            assert gone == [s for s in keys if s <= upto]
            for s in gone:
                del model[s]
            assert log.base == upto + 1
        if step % 25 == 0:
            _check(log, model)
    _check(log, model)
    return log


def test_packed_log_matches_a_dict_without_a_reserve():
    for seed in range(6):
        _run(seed, 0)


def test_packed_log_matches_a_dict_with_a_reserve():
    for seed in range(6):
        _run(100 + seed, 8 * CHUNK)


def test_reserve_is_the_budget_and_compaction_needs_no_buffer():
    log = SlotLog(1000, 4 * CHUNK)
    spares = [id(b) for b in log._spare]
    value = ["b", [["k", "v" * 500]]]  # ~520 bytes a record: 3 to a buffer
    s = 0
    while True:
        s += 1
        if not log.put(s, 1, "n1", value, 0):
            break
    assert s == 10 and log.fresh == 0  # 9 records filled 3 buffers; the 10th refused
    for x in range(10, 14):  # unless forced: the reserve's last quarter, then a fresh one
        assert log.put(x, 1, "n1", value, 0, True)
    assert log.fresh == 1 and len(log._chunks) == 5
    assert log.drop_upto(1) == [1] and log.drop_upto(5) == [2, 3, 4, 5]
    # the remaining 8 records slid down into the first 3 buffers: 2 emptied, none new
    assert len(log._chunks) == 3 and log.fresh == 1 and log.base == 6
    assert [log.get(x)[2] for x in range(6, 14)] == [value] * 8
    assert log.put(14, 2, "n2", value, 1)  # room left in the third buffer
    assert not log.put(15, 2, "n2", value, 1)  # a fourth would pass three quarters
    assert log.fresh == 1 and log.get(14)[:4] == (2, "n2", value, 1)
    held = log._chunks + log._spare
    assert sum(1 for b in held if id(b) in spares) == 4
