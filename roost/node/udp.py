"""UDP peer-to-peer transport: one non-blocking socket, polled through asyncio.

Gossip and Paxos run over it with no broker at all. The address book maps node ids to
(host, port); a datagram from an address not in the book is still delivered (the envelope's
HMAC says who sent it) with src "". Datagrams longer than ``max_bytes`` are dropped and
counted: the socket reads ``max_bytes + 1`` so an oversized one is seen, not truncated.

    t = UdpTransport("0.0.0.0", 7001, {"n02": ("10.0.0.2", 7001)})
    t.open()
    t.send("n02", payload)            # True if the peer has an address (sent or counted)
    src, payload = await t.recv()     # waits for the next datagram of acceptable size
"""

import gc
import socket
import sys

from roost.common.limits import MAX_DATAGRAM
from roost.node.aio import wait_readable

_EAGAIN = (11, 35, 119)  # EAGAIN/EWOULDBLOCK on Linux, BSD and lwIP
_EADDRINUSE = (98, 48, 112)  # EADDRINUSE on Linux, BSD and lwIP
_ON_BOARD = sys.platform not in ("linux", "darwin", "win32")  # esp32, rp2, ...
_RETAKE_READS = 32  # reads between tries to take the reserve again (a failed try collects)


def _resolve(host, port):
    return _addr_key(socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1])


def _addr_key(a):
    # MicroPython's unix port gives raw sockaddr bytes (a bytearray from getaddrinfo, bytes
    # from recvfrom); boards and CPython give (ip, port) tuples
    return bytes(a) if isinstance(a, bytearray) else a


class UdpTransport:
    """Send to and receive from peers by node id over UDP."""

    def __init__(self, bind_host, bind_port, peers=None, max_bytes=MAX_DATAGRAM):
        if not isinstance(bind_port, int) or not 0 <= bind_port < 65536:
            raise ValueError("UDP port must be 0..65535")
        self.bind_host = bind_host
        self.bind_port = bind_port
        self.max_bytes = max_bytes
        self.book = {}  # node id -> (host, port) as configured
        self.addr = {}  # node id -> resolved socket address
        self.by_addr = {}  # resolved socket address -> node id
        self.sock = None
        # a block of a datagram's size, kept for when the heap has none left (see _recvfrom)
        self._reserve = None
        self._retake = 0  # reads until the next try to take it again
        self.stats = {"udp_tx": 0, "udp_rx": 0, "udp_tx_errors": 0, "udp_rx_oversize": 0,
                      "udp_rx_unknown_addr": 0, "udp_rx_errors": 0, "udp_rx_reserve_used": 0}
        for node_id in sorted(peers or {}):
            h, p = peers[node_id]
            self.add_peer(node_id, h, p)

    def add_peer(self, node_id, host, port):
        """Add or move a peer in the address book."""
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("peer %s: UDP port must be 1..65535" % node_id)
        old = self.addr.get(node_id)
        if old is not None:
            self.by_addr.pop(old, None)
        a = _resolve(host, port)
        self.book[node_id] = (host, port)
        self.addr[node_id] = a
        self.by_addr[a] = node_id

    def remove_peer(self, node_id):
        a = self.addr.pop(node_id, None)
        self.book.pop(node_id, None)
        if a is not None:
            self.by_addr.pop(a, None)

    def peers(self):
        return sorted(self.addr)

    def open(self):
        """Bind the socket (non-blocking); returns the bound port (useful with port 0)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if _ON_BOARD:  # a board's soft reset may leave the last run's socket open; a
            # process (CPython, or MicroPython's unix port) binds alone: two nodes on one
            # port would split its datagrams between them, silently
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            except (OSError, AttributeError):
                pass
        try:
            where = _resolve(self.bind_host, self.bind_port)
        except OSError as e:  # a name that does not resolve (gaierror)
            s.close()
            raise ValueError("the UDP address %s does not resolve (%s): give an address of "
                             "this machine, or 0.0.0.0" % (self.bind_host, e)) from None
        try:
            s.bind(where)
        except OSError as e:
            s.close()
            if e.args and e.args[0] in _EADDRINUSE:
                raise ValueError("UDP port %d on %s is taken (another node, or another "
                                 "program): give this node a port of its own (its config's "
                                 "udp; roost flash --udp-port for a board)"
                                 % (self.bind_port, self.bind_host)) from None
            raise
        s.setblocking(False)
        self.sock = s
        if self._reserve is None:
            self._keep_reserve()
        if hasattr(s, "getsockname"):
            self.bind_port = s.getsockname()[1]
        return self.bind_port

    def send(self, dst, payload):
        """Send to a peer by id. False if it has no UDP address (try another transport)."""
        a = self.addr.get(dst)
        if a is None:
            return False
        if self.sock is None:
            self.stats["udp_tx_errors"] += 1
            return True
        try:
            self.sock.sendto(payload, a)
            self.stats["udp_tx"] += 1
        except OSError:  # full buffer, no route: UDP may lose it anyway; the cores retry
            self.stats["udp_tx_errors"] += 1
        return True

    def poll(self):
        """One datagram if one is waiting: (src, payload), or None. Oversize ones are
        dropped and counted (and None returned for them too)."""
        if self.sock is None:
            return None
        try:
            data, a = self._recvfrom()
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                return None
            self.stats["udp_rx_errors"] += 1  # e.g. ECONNREFUSED reported for an earlier send
            return None
        if len(data) > self.max_bytes:
            self.stats["udp_rx_oversize"] += 1
            return None
        self.stats["udp_rx"] += 1
        src = self.by_addr.get(_addr_key(a))
        if src is None:
            self.stats["udp_rx_unknown_addr"] += 1
            src = ""
        return src, data

    def _keep_reserve(self):
        try:
            self._reserve = bytearray(self.max_bytes + 1)
        except MemoryError:  # tried again _RETAKE_READS reads later
            self._retake = _RETAKE_READS

    def _recvfrom(self):
        """``sock.recvfrom`` of up to max_bytes + 1. A board's heap, fragmented under load,
        can be left with plenty free and no block of a datagram's size: then the block kept
        for it is let go and the read tried once more (a node that cannot read stalls its
        group), and the block is taken again when there is room."""
        if self._reserve is None:
            self._retake -= 1
            if self._retake <= 0:
                self._keep_reserve()
        try:
            return self.sock.recvfrom(self.max_bytes + 1)
        except MemoryError:
            if self._reserve is None:
                raise
        self._reserve = None
        gc.collect()
        self.stats["udp_rx_reserve_used"] += 1
        return self.sock.recvfrom(self.max_bytes + 1)

    async def recv(self):
        """Wait for the next acceptable datagram: (src, payload)."""
        while True:
            got = self.poll()
            if got is not None:
                return got
            s = self.sock
            if s is None:
                raise OSError(9, "transport closed")
            await wait_readable(s)

    def close(self):
        s = self.sock
        self.sock = None
        if s is not None:
            s.close()
