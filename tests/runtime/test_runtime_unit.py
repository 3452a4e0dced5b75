"""NodeRuntime and UdpTransport without asyncio loops: boot, effects in order, routing, fault
switch, bad hosts, oversize datagrams (CPython and MicroPython)."""

import socket

from roost.node.effects import APPLY, EVENT, PERSIST, SEND
from roost.node.runtime import NodeRuntime, Storage
from roost.node.udp import UdpTransport
from tests.runtime._tmp import remove_tree, scratch_dir
from tests.runtime.tinyhost import tiny_factory


class FakeTransport:
    """Records sends; reads the flash dir at each send to prove persist-before-send."""

    def __init__(self, peers, flash=None):
        self.known = sorted(peers)
        self.flash = flash
        self.sent = []

    def peers(self):
        return self.known

    def send(self, dst, payload):
        if dst not in self.known:
            return False
        on_disk = Storage(self.flash).get("x") if self.flash else None
        self.sent.append((dst, payload, on_disk))
        return True

    def close(self):
        pass


class ScriptHost:
    def __init__(self, node_id, channel, storage, rng, now_ms):
        self.storage = storage
        self.channel = channel

    def receive(self, now_ms, src, payload):
        if payload == b"boom":
            raise RuntimeError("a core bug")
        if payload == b"nomem":
            raise MemoryError("memory allocation failed")
        return [(PERSIST, "x", 1), (SEND, "n2", b"after-1"), (PERSIST, "x", 2),
                (SEND, "*", b"after-2"), (APPLY, 1, "cmd"), (EVENT, "e", [src])]

    def tick(self, now_ms):
        return []

    def next_deadline_ms(self):
        return None


def _rt(d, transports, observers=()):
    return NodeRuntime(ScriptHost, "n1", "k", d, transports, observers=list(observers),
                       log=lambda m: None)


def test_boot_counts_incarnations_and_hides_the_counter():
    d = scratch_dir("rt")
    try:
        for expect in (1, 2, 3):
            rt = _rt(d, [])
            host = rt.boot()
            assert rt.incarnation == expect and rt.channel.incarnation == expect
            assert "_boot" not in host.storage
            rt.storage.put("kept", expect)
        state = _rt(d, []).boot().storage  # a dict, or flash read lazily (MicroPython)
        assert {k: state.get(k) for k in state} == {"kept": 3}
    finally:
        remove_tree(d)


def test_effects_run_in_order_and_persist_before_send():
    d = scratch_dir("rt")
    try:
        seen = []
        t = FakeTransport(["n1", "n2", "n3"], d)
        rt = _rt(d, [t], [lambda now, node, e: seen.append((node, e))])
        rt.boot()
        rt.deliver("n2", b"hello")
        # the step's PERSISTs are written together (one write) before its first SEND;
        # n1 itself is not a peer; "*" goes to every other peer in sorted order
        assert t.sent == [("n2", b"after-1", 2), ("n2", b"after-2", 2), ("n3", b"after-2", 2)]
        assert seen == [("n1", (APPLY, 1, "cmd")), ("n1", (EVENT, "e", ["n2"]))]
        assert rt.stats["persists"] == 2 and rt.stats["tx"] == 3 and rt.stats["rx"] == 1
        assert rt.storage.stats["commits"] == 2  # the boot counter, then the whole step
    finally:
        remove_tree(d)


class QueueTransport(FakeTransport):
    """Datagrams waiting in a list, taken by poll() the way UdpTransport drains its socket."""

    def __init__(self, peers, flash, waiting):
        FakeTransport.__init__(self, peers, flash)
        self.waiting = waiting

    def poll(self):
        return self.waiting.pop(0) if self.waiting else None


def test_a_batch_of_datagrams_shares_one_write_and_sends_after_it():
    d = scratch_dir("rt")
    try:
        t = QueueTransport(["n2", "n3"], d, [("n3", b"two"), ("n2", b"three")])
        rt = _rt(d, [t])
        rt.boot()
        before = rt.storage.stats["commits"]
        rt._deliver_batch(t, "n2", b"one")
        assert rt.stats["rx"] == 3 and rt.stats["rx_batches"] == 1 and not t.waiting
        assert rt.storage.stats["commits"] == before + 1  # six PERSISTs, one write
        assert len(t.sent) == 9 and all(on_disk == 2 for _, _, on_disk in t.sent)
        bad = QueueTransport(["n2"], d, [("n2", b"boom"), ("n2", b"x")])
        rt2 = _rt(d, [bad])
        rt2.boot()
        rt2._deliver_batch(bad, "n2", b"y")  # a core bug in the middle loses no other step
        assert rt2.stats["host_errors"] == 1 and rt2.stats["rx"] == 3 and len(bad.sent) == 4
    finally:
        remove_tree(d)


class HoldingHost(ScriptHost):
    """Records hold/receive/release in order; release() sends what the batch started."""

    def __init__(self, *args):
        ScriptHost.__init__(self, *args)
        self.calls = []

    def hold(self):
        self.calls.append("hold")

    def receive(self, now_ms, src, payload):
        self.calls.append(payload.decode())
        if payload == b"boom":
            raise RuntimeError("a core bug")
        return [(PERSIST, "x", len(self.calls))]

    def release(self, now_ms):
        self.calls.append("release")
        return [(SEND, "n2", b"batch")]


def test_a_host_that_holds_hears_of_each_batch_and_sends_after_it():
    """The runtime tells a host with hold()/release() where a batch of datagrams starts
    and ends (Paxos puts the requests among them in one slot); release's sends follow the
    batch's one write, and a core bug in the middle does not skip the release."""
    d = scratch_dir("rt")
    try:
        t = QueueTransport(["n2", "n3"], d, [("n3", b"two"), ("n2", b"boom"), ("n3", b"four")])
        rt = NodeRuntime(HoldingHost, "n1", "k", d, [t], log=lambda m: None)
        host = rt.boot()
        rt._deliver_batch(t, "n2", b"one")
        assert host.calls == ["hold", "one", "two", "boom", "four", "release"]
        assert t.sent == [("n2", b"batch", 5)] and rt.stats["host_errors"] == 1
        rt.deliver("n3", b"alone")  # a single datagram, as the MQTT transport hands over
        assert host.calls[-1] == "alone"
    finally:
        remove_tree(d)


def test_routing_falls_back_to_the_next_transport_and_counts_no_route():
    d = scratch_dir("rt")
    try:
        udp = FakeTransport(["n3"])
        broker = FakeTransport(["n2"])
        rt = _rt(d, [udp, broker])
        rt.boot()
        assert rt.peers() == ["n2", "n3"]
        rt.execute([(SEND, "n2", b"a"), (SEND, "n3", b"b"), (SEND, "n9", b"c")])
        assert broker.sent == [("n2", b"a", None)] and udp.sent == [("n3", b"b", None)]
        assert rt.stats["tx_no_route"] == 1
    finally:
        remove_tree(d)


def test_fault_switch_and_host_errors_keep_the_node_up():
    d = scratch_dir("rt")
    try:
        t = FakeTransport(["n2", "n3"])
        rt = _rt(d, [t])
        rt.boot()
        rt.blocked = {"n3"}
        rt.deliver("n3", b"x")  # from a blocked peer: not delivered
        assert rt.stats["rx"] == 0 and rt.stats["fault_dropped"] == 1
        rt.deliver("n2", b"boom")
        assert rt.stats["host_errors"] == 1
        rt.deliver("n2", b"fine")
        assert [s[0] for s in t.sent] == ["n2", "n2"]  # nothing to n3
        rt.blocked = set()
        rt.loss_ppm = 1000000
        rt.deliver("n2", b"lost")
        assert rt.stats["rx"] == 2
        st = rt.status()
        assert st["node"] == "n1" and st["incarnation"] == 1 and st["peers"] == ["n2", "n3"]
        assert st["stats"]["host_errors"] == 1 and "rx_rejected_auth" in st["stats"]
    finally:
        remove_tree(d)


def test_a_step_out_of_memory_rebuilds_the_host_from_flash():
    """A MemoryError inside a step may leave a core half-changed: the steps before it are
    written, then the host is rebuilt from flash (a new incarnation), the process goes on;
    the third time within a minute the node stops taking part instead."""
    d = scratch_dir("rt")
    try:
        t = FakeTransport(["n2"], flash=d)
        rt = _rt(d, [t])
        first = rt.boot()
        rt.deliver("n2", b"fine", False)  # staged: its write and sends wait for the flush
        rt.deliver("n2", b"nomem", False)
        assert rt.host is first and rt.stats["memory_errors"] == 1
        rt.deliver("n2", b"fine", False)  # the rest of the batch: not for a half-changed host
        assert rt.stats["rx_while_rebuilding"] == 1
        rt.flush()
        assert rt.rebuild()
        assert rt.host is not first and rt.incarnation == 2
        assert rt.stats["memory_rebuilds"] == 1 and rt.stats["host_errors"] == 0
        assert rt.host.storage.get("x") == 2  # the whole step before it was written
        assert [s[2] for s in t.sent] == [2, 2]  # and its sends went after the write
        rt._deliver_batch(t, "n2", b"nomem")  # the receive loop's path rebuilds by itself
        assert rt.incarnation == 3 and rt.stats["memory_rebuilds"] == 2
        rt.deliver("n2", b"fine")
        assert len(t.sent) == 4
        rt._deliver_batch(t, "n2", b"nomem")  # a third time within a minute: it stops
        assert rt.out_of_memory and rt.host is None and rt.status()["out_of_memory"]
        assert not rt._rebuild and rt.incarnation == 3
        rt.deliver("n2", b"fine")  # heard, not handled: the node takes no part any more
        assert len(t.sent) == 4 and rt.stats["rx_while_rebuilding"] == 2
    finally:
        remove_tree(d)


def test_a_write_out_of_memory_sends_nothing_that_waited_for_it():
    """A MemoryError while writing a step's records (here the commit of a local command):
    the sends that waited for that write are dropped, never sent after it, and the host is
    rebuilt from flash, which holds only what was written."""
    d = scratch_dir("rt")
    try:
        t = FakeTransport(["n2"], flash=d)
        rt = _rt(d, [t])
        first = rt.boot()
        real = rt.storage.commit
        starved = [1]

        def commit():
            if starved[0]:
                starved[0] = 0
                rt.storage._pending = []  # what DirStorage does before its first write
                raise MemoryError("memory allocation failed, allocating 512 bytes")
            return real()

        rt.storage.commit = commit
        rt.call(lambda host, now: [(PERSIST, "x", 7), (SEND, "n2", b"reveals-7")])
        assert t.sent == [] and rt._held == [] and rt._rebuild
        assert rt.stats["memory_errors"] == 1
        rt.flush()  # the next flush has nothing of it to write, and nothing to send
        assert t.sent == []
        assert rt.rebuild() and rt.host is not first
        assert rt.host.storage.get("x") is None
    finally:
        remove_tree(d)


class StarvedTransport(FakeTransport):
    """Its receive finds no heap for a datagram, every time, until the test has seen 3."""

    def __init__(self, rt, peers):
        FakeTransport.__init__(self, peers)
        self.rt = rt
        self.calls = 0

    async def recv(self):
        self.calls += 1
        if self.calls > 3:
            self.rt.stop()
            raise OSError(9, "transport closed")
        raise MemoryError("memory allocation failed, allocating 1401 bytes")


def test_a_node_that_cannot_receive_for_want_of_memory_stops_taking_part():
    """A node with no room for a datagram cannot hear its group: as leader it would keep
    the group waiting, as follower it would keep calling elections it never wins. Such
    memory errors count like a step's; the third within a minute stops the node."""
    import asyncio

    d = scratch_dir("rt")
    try:
        rt = _rt(d, [])
        t = StarvedTransport(rt, ["n2"])
        rt.transports = [t]
        rt.boot()
        rt.running = True
        asyncio.run(rt._rx_loop(t))
        assert t.calls == 4 and rt.stats["memory_errors"] == 3
        assert rt.out_of_memory and rt.host is None and rt.status()["out_of_memory"]
    finally:
        remove_tree(d)


def test_gc_threshold_is_set_on_micropython_and_checked_everywhere():
    import gc

    from roost.node.runtime import RuntimeConfig

    d = scratch_dir("rt")
    try:
        NodeRuntime(ScriptHost, "n1", "k", d, [], config=RuntimeConfig(gc_threshold=32768),
                    log=lambda m: None)
        if hasattr(gc, "threshold"):  # MicroPython: collect after 32 KB allocated
            assert gc.threshold() == 32768
            gc.threshold(-1)
        try:
            RuntimeConfig(gc_threshold=-1)
            raise AssertionError("a negative gc_threshold was accepted")
        except ValueError as e:
            assert "gc_threshold" in str(e)
    finally:
        remove_tree(d)


def test_tiny_host_recovers_its_counter():
    d = scratch_dir("rt")
    try:
        rt = NodeRuntime(tiny_factory(), "n1", "k", d, [FakeTransport(["n2"])],
                         log=lambda m: None)
        host = rt.boot()
        now = host.next_deadline_ms()  # the runtime's clock: time since the process began
        for _ in range(20):
            rt.execute(host.tick(now))
            now += 50
        count = host.count
        assert count > 5
        again = NodeRuntime(tiny_factory(), "n1", "k", d, [], log=lambda m: None)
        assert again.boot().recovered == count and again.incarnation == 2
    finally:
        remove_tree(d)


def _open_somewhere(max_bytes):
    # MicroPython's unix sockets have no getsockname: pick a random high port, retry if taken
    import os

    for _ in range(20):
        r = os.urandom(2)
        t = UdpTransport("127.0.0.1", 20000 + ((r[0] << 8) | r[1]) % 40000, max_bytes=max_bytes)
        try:
            return t, t.open()
        except (OSError, ValueError):  # taken: ValueError, one sentence (see below)
            t.close()
    raise AssertionError("no free UDP port")


def test_udp_drops_oversize_and_names_known_senders():
    a, pa = _open_somewhere(100)
    b, pb = _open_somewhere(1400)
    try:
        a.add_peer("n2", "127.0.0.1", pb)
        b.add_peer("n1", "127.0.0.1", pa)
        assert b.send("n1", b"x" * 101) and b.send("n1", b"y" * 100) and not b.send("n9", b"z")
        got = None
        for _ in range(10000):  # loopback delivery is immediate; bounded anyway
            got = a.poll()
            if got is not None:
                break
        assert got == ("n2", b"y" * 100), got
        assert a.stats["udp_rx_oversize"] == 1 and a.stats["udp_rx"] == 1
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.sendto(b"hi", socket.getaddrinfo("127.0.0.1", pa)[0][-1])
        stranger.close()
        got = None
        for _ in range(10000):
            got = a.poll()
            if got is not None:
                break
        assert got == ("", b"hi") and a.stats["udp_rx_unknown_addr"] == 1
    finally:
        a.close()
        b.close()


class TightSocket:
    """A socket whose heap has no block for a datagram while `tight` reads remain, unless
    the transport has just let its reserve go."""

    def __init__(self, t, tight):
        self.t = t
        self.tight = tight
        self.reads = 0

    def recvfrom(self, n):
        self.reads += 1
        if self.tight > 0 and self.t._reserve is not None:
            self.tight -= 1
            raise MemoryError("memory allocation failed, allocating %d bytes" % n)
        return b"payload", ("127.0.0.1", 7)

    def close(self):
        pass


def test_a_datagram_with_no_block_left_for_it_takes_the_reserved_one():
    """A board's heap fragmented under load can have room but no block of a datagram's
    size: the transport lets go of the block it keeps for that and reads again; with none
    kept, the memory error goes to the runtime (which counts it)."""
    t = UdpTransport("127.0.0.1", 0, max_bytes=1200)
    t._keep_reserve()
    t.sock = TightSocket(t, 1)
    assert t.poll() == ("", b"payload") and t.sock.reads == 2
    assert t.stats["udp_rx_reserve_used"] == 1 and t.stats["udp_rx"] == 1
    assert t.poll() == ("", b"payload")  # the next read takes the block again
    assert t._reserve is not None and len(t._reserve) == 1201
    t._reserve = None
    t._retake = 5  # a try to take it again failed a few reads ago: none kept
    t.sock = TightSocket(t, 1)
    t.sock.recvfrom = _no_room
    try:
        t.poll()
        raise AssertionError("the memory error was swallowed")
    except MemoryError:
        pass
    assert t.stats["udp_rx_reserve_used"] == 1 and t._reserve is None


def _no_room(n):
    raise MemoryError("memory allocation failed, allocating %d bytes" % n)


class LeaderHost(ScriptHost):
    """Leads 300 ms after it boots (an EVENT as a Paxos core says it), then idles."""

    def __init__(self, node_id, channel, storage, rng, now_ms):
        super().__init__(node_id, channel, storage, rng, now_ms)
        self.at = now_ms + 300

    def tick(self, now_ms):
        if self.at is not None and now_ms >= self.at:
            self.at = None
            return [(EVENT, "paxos.leader", ["n1", 1, 1])]
        return []

    def next_deadline_ms(self):
        return self.at

    def status(self):
        return {"leads": self.at is None}


class StateBroker:
    def __init__(self):
        self.states = []

    def publish(self, t, payload, qos=0, retain=False):
        if t.endswith("/state"):
            self.states.append(payload)


def test_a_node_that_starts_to_lead_says_so_before_its_next_status():
    """roost status reads the retained status, published every 5 s on a plan: a board that
    had just rebuilt or taken the lead still showed its old role (a rehearsal). A role
    change publishes it within a second."""
    import asyncio

    from roost.node.runtime import RuntimeConfig

    d = scratch_dir("status-soon")
    try:
        broker = StateBroker()
        def observe(now, node, e):  # as the node's (roost/node/nodemain.py) does
            if e[0] == EVENT and e[1] == "paxos.leader":
                rt.status_soon()

        rt = NodeRuntime(LeaderHost, "n1", "k", d, [], RuntimeConfig(status_interval_ms=60000),
                         observers=[observe], mqtt=broker, log=lambda m: None)

        async def run():
            task = asyncio.create_task(rt.run())
            await asyncio.sleep(1.6)
            rt.stop()
            await task

        asyncio.run(run())
        assert len(broker.states) == 2, broker.states  # at the start, and once it led
        assert '"leads": true' in broker.states[1], broker.states
    finally:
        remove_tree(d)


def test_a_node_that_stood_down_never_brings_its_cores_back():
    """A rebuild still asked for (a memory error in the step before) must not revive the
    cores of a node that stood down: it would take part again as the board that lost."""
    d = scratch_dir("stood-down")
    try:
        rt = _rt(d, [FakeTransport(["n2"])])
        rt.boot()
        rt._rebuild = True
        rt.stand_down()
        assert rt.host is None and rt.status()["stood_down"] is True
        assert rt.rebuild() is False and rt.host is None and rt.incarnation == 1
        rt.deliver("n2", b"x")
        assert rt.host is None and rt.stats["rx"] == 0
    finally:
        remove_tree(d)


def test_a_udp_port_another_node_holds_is_one_sentence():
    """Two nodes given one port split its datagrams between them, silently (the socket took
    SO_REUSEADDR): the second now stops at start, saying so."""
    t, port = _open_somewhere(1400)
    other = UdpTransport("127.0.0.1", port)
    try:
        other.open()
    except ValueError as e:
        assert ("UDP port %d on 127.0.0.1 is taken" % port) in str(e)
    else:
        raise AssertionError("a second socket took the port")
    finally:
        other.close()
        t.close()


def test_a_udp_address_that_does_not_resolve_is_one_sentence():
    t = UdpTransport("nosuchhost.invalid", 4210)
    try:
        t.open()
    except ValueError as e:
        assert "the UDP address nosuchhost.invalid does not resolve" in str(e)
    else:
        raise AssertionError("bound to a name that does not resolve")
    finally:
        t.close()
