"""UDP addresses announced through the broker (MicroPython-safe).

Nodes of a real fleet's plan know each other by id only: a classroom network hands out
addresses by DHCP. Each node publishes its ``[host, port]``, sealed with the fleet key,
retained on roost/<fleet>/node/<id>/udp each time its MQTT client connects, and adds the
others' to its UDP address book. Gossip and Paxos then go peer to peer and keep working
while the broker is away. A forged address fails the tag and is counted; an old one was
still that node's own. Configured peers are never moved. A node that hears another node
announce itself under its own id (two boards flashed with the same --node-id, a classroom
mistake that otherwise shows only as rejected replays) says so once on its console; the
one with the lower boot count (an old board switched on beside the one that replaced it,
whose datagrams the fleet drops as replays anyway) stops taking part.
"""

from roost.common import envelope as _env
from roost.node.aio import now_ms
from roost.node.mqtt_codec import parse_url
from roost.node.runtime import topic

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


KIND_ADDR = const(120)  # outside the gossip and key-value kinds: never handed to a core


def local_ip(toward):
    """This node's address on the network that reaches host ``toward``: a board's Wi-Fi
    station address, else the source address a UDP socket connected there would use (no
    datagram is sent); toward this machine's loopback (a virtual board beside its broker on
    a laptop), the loopback. None when none can be told (the unix port has no getsockname)."""
    here = toward == "localhost" or toward.startswith("127.")
    try:
        import network

        w = network.WLAN(network.STA_IF)
        if w.isconnected():
            ip = w.ifconfig()[0]
            if here or not ip.startswith("127."):  # a virtual board's station is loopback
                return ip
    except (ImportError, AttributeError, OSError):
        pass
    if here:
        return "127.0.0.1"
    try:
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(socket.getaddrinfo(toward, 9)[0][-1])
            return s.getsockname()[0]
        finally:
            s.close()
    except (AttributeError, OSError, IndexError):
        return None


def parse(payload, mac, node_id):
    """A retained announcement of node_id -> ((host, port), (incarnation, seq), None) or
    (None, None, reason)."""
    env, why = _env.decode(payload, mac)
    if env is None:
        return None, None, why
    b = env.body
    if (env.kind != KIND_ADDR or env.sender != node_id or not isinstance(b, list)
            or len(b) != 2 or not isinstance(b[0], str) or not b[0]
            or not isinstance(b[1], int) or isinstance(b[1], bool) or not 0 < b[1] < 65536):
        return None, None, _env.R_MALFORMED
    return (b[0], b[1]), (env.incarnation, env.seq), None


def newer(stamps, node, stamp):
    """1 when stamp, an announcement's (incarnation, seq), is newer than the last one taken
    for node (recorded in stamps), 0 for the same one again, -1 for an older one: anyone who
    may publish on the broker can put back an earlier signed announcement, and it must not
    move the node."""
    last = stamps.get(node)
    if last is not None and stamp <= last:
        return 0 if stamp == last else -1
    stamps[node] = stamp
    return 1


class AddrBook:
    """Announce this node's UDP address and learn the fleet's, over one MQTT client."""

    def __init__(self, client, fleet, node_id, udp, static, stats, channel_of,
                 broker_url=None, log=None, on_newer=None):
        self.client = client
        self.log = log
        self.on_newer = on_newer  # (address) when a board with this id and a later boot speaks
        self.channel_of = channel_of  # -> the node's channel now (None before it booted)
        self.node_id = node_id
        self.udp = udp
        self.static = static  # ids with configured addresses: never moved
        self.stats = stats  # the runtime's counters: addr_learned, rx_rejected_addr
        self.topic = topic(fleet, node_id, "udp")
        self.prefix = topic(fleet, "", "")[:-1]  # roost/<fleet>/node/: the check on every message
        self.toward = "127.0.0.1"
        if broker_url:
            try:
                self.toward = parse_url(broker_url)[0]
            except ValueError:
                pass
        stats["addr_learned"] = 0
        stats["rx_rejected_addr"] = 0
        stats["duplicate_id"] = 0
        self._sent = []  # (incarnation, seq) of this node's last announcements
        self._stored = False  # one of them came back: the broker holds this boot's address
        self.twin = None  # [address, now_ms()] of the last announcement by another board
        self._mine = None  # the [host, port] it announced
        self._newest = {}  # node -> (incarnation, seq) of the announcement last taken
        self._prev = client.on_message
        client.on_message = self._on_message
        client.subscribe(topic(fleet, "+", "udp"), 0)

    def announce(self, client=None):
        """Publish this node's address (an MQTT on_connect callback)."""
        ch = self.channel_of()
        if ch is None or self.udp.sock is None:
            return
        host = self.udp.bind_host
        if host in ("0.0.0.0", ""):
            host = local_ip(self.toward)
        if not host or not self.udp.bind_port:
            return  # the fleet learns this node's address from its datagrams instead
        data = ch.seal(KIND_ADDR, _env.BROADCAST, [host, self.udp.bind_port])
        self._sent = self._sent[-3:] + [(ch.incarnation, ch.seq)]
        self._mine = [host, self.udp.bind_port]
        self.client.publish(self.topic, data, 1, True)

    def _on_message(self, t, payload, retained):
        if not (t.startswith(self.prefix) and t.endswith("/udp")):
            if self._prev is not None:
                self._prev(t, payload, retained)
            return
        node = t[len(self.prefix):-4]
        ch = self.channel_of()
        if ch is None:
            return
        if node == self.node_id:
            self._check_twin(bytes(payload), retained, ch)
            return
        if node in self.static:
            return
        got, stamp, _why = parse(bytes(payload), ch.mac, node)
        if got is None:
            self.stats["rx_rejected_addr"] += 1
            return
        fresh = newer(self._newest, node, stamp)
        if fresh < 1:
            if fresh < 0:
                self.stats["rx_rejected_addr"] += 1
            return
        if self.udp.book.get(node) != got:
            try:
                self.udp.add_peer(node, got[0], got[1])
            except (ValueError, OSError, IndexError):  # an address that does not resolve
                self.stats["rx_rejected_addr"] += 1
                return
            self.stats["addr_learned"] += 1

    def _check_twin(self, payload, retained, ch):
        """An announcement under this node's own id: its own (one it sent, heard back, or a
        retained one from an earlier boot found before its own came back) or another
        node's that uses the same id: any it did not send once it has announced, or one
        from a later boot than this. The broker hands a twin's connection and ours the same
        client id in turn, so a twin mostly shows as the retained announcement found at a
        reconnect; once this boot's own came back, the broker held it, so an earlier boot's
        found after that was published after it: by an old board resumed beside the one
        that replaced it (roost flash --replace), whose boot count is lower."""
        env, _why = _env.decode(payload, ch.mac)
        if env is None or env.kind != KIND_ADDR or env.sender != self.node_id:
            return
        inc = env.incarnation
        if (inc, env.seq) in self._sent:
            self._stored = True
            return
        if env.body == self._mine:
            return  # its own (a board whose flash was erased counts its boots from 1 again)
        if retained and not self._stored and (
                inc < ch.incarnation or (inc == ch.incarnation and not self._sent)):
            return
        self.stats["duplicate_id"] += 1
        b = env.body if isinstance(env.body, list) and len(env.body) == 2 else ["?", "?"]
        self.twin = ["%s:%s" % (b[0], b[1]), now_ms()]
        if inc > ch.incarnation and self.on_newer is not None:
            self.on_newer(self.twin[0])  # this board is the old one: the fleet takes the other
        elif self.stats["duplicate_id"] == 1 and self.log is not None:
            self.log("roost: another node also calls itself %s (at %s:%s): give each board "
                     "its own --node-id" % (self.node_id, b[0], b[1]))
