"""A snapshot is decoded as its datagrams arrive: a replica whose heap has no block of the
snapshot's size installs it all the same. MicroPython-safe; on MicroPython the heap is
fragmented for real:
`micropython -X heapsize=160K tests/mpy_runner.py tests/paxos/test_snapshot_pieces.py`.
"""

IDS = ["n1", "n2", "n3"]


def test_a_snapshot_with_no_block_of_its_size_is_installed_from_its_datagrams():
    """On MicroPython with a fragmented heap (holes of 3 KB, none of the snapshot's 6 KB)
    the datagrams are decoded one by one as they arrive; no text of the whole is made."""
    import binascii
    import sys

    from roost.common.channel import Channel
    from roost.common.jsonpieces import Pieces, piece_slice, write_json
    from roost.node.paxos import SNAP, PaxosCore
    from tests.paxos.pump import KEY, NEW, CountSM

    core = PaxosCore("n2", Channel("n2", KEY), IDS, CountSM(), storage=dict(NEW), now_ms=0)
    lch = Channel("n1", KEY)
    rec = [40, 40, [[1, IDS]], [40, 123, [["k%d" % i, "v" * 180] for i in range(30)]]]
    w = Pieces()  # as a leader sends it: the text never one block
    write_json(w, rec)
    assert w.total > 5500
    hold = []
    if sys.implementation.name == "micropython":
        import gc

        gc.collect()
        try:
            while True:
                hold.append(bytearray(1024))
        except MemoryError:
            pass
        for i in range(len(hold)):  # three KB in four free: room for the snapshot's
            if i % 4:  # strings and a datagram, no block of its 6 KB
                hold[i] = None
        gc.collect()
    try:
        off = 0
        while off < w.total:
            raw = piece_slice(w.parts, off, 600)
            body = [40, w.total, w.crc, off, binascii.b2a_base64(raw).decode().rstrip("\n")]
            core.receive(1, "n1", lch.seal(SNAP, "n2", body))
            off += len(raw)
    finally:
        hold = None
    assert core.stats["snapshots_installed"] == 1, core.stats
    assert core.applied_slot == 40 and core.sm.count == 40 and core.sm.last == rec[3][2]


def test_a_damaged_snapshot_is_refused_and_the_next_one_starts_over():
    import binascii

    from roost.common.channel import Channel
    from roost.common.jsonpieces import Pieces, piece_slice, write_json
    from roost.node.paxos import SNAP, PaxosCore
    from tests.paxos.pump import KEY, NEW, CountSM

    core = PaxosCore("n2", Channel("n2", KEY), IDS, CountSM(), storage=dict(NEW), now_ms=0)
    lch = Channel("n1", KEY)
    rec = [40, 40, [[1, IDS]], [40, 123, ["x" * 50] * 10]]
    w = Pieces()
    write_json(w, rec)

    def send(crc, damage=False):
        off = 0
        while off < w.total:
            raw = piece_slice(w.parts, off, 200)
            if damage and off == 0:
                raw = b"{" + raw[1:]  # not the text the crc is of, and not JSON
            body = [40, w.total, crc, off, binascii.b2a_base64(raw).decode().rstrip("\n")]
            core.receive(1, "n1", lch.seal(SNAP, "n2", body))
            off += len(raw)

    send(w.crc ^ 1)  # whole and well-formed, but not the crc announced
    assert core.stats["snapshots_installed"] == 0 and core._snap_rx is None
    bad = core.channel.rejected_total()
    send(w.crc, damage=True)  # refused at its first datagram, the rest ignored
    assert core.stats["snapshots_installed"] == 0 and core.channel.rejected_total() > bad
    send(w.crc)
    assert core.stats["snapshots_installed"] == 1 and core.sm.count == 40
