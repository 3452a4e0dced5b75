"""One ESP32-class node driven step by step over a pipe (MicroPython: the unix port or the
32-bit WebAssembly port), for bench/bench_heap32.py.

The node is what the emulated fleet's MicroPython node builds (gossip member, Paxos replica
of the key-value store with the ESP32-sized options, simulated sensors) with its flash in a
directory; the simulator in the other process owns the clock and the network. Each request
is one line; each answer is one line, the step's effects:

    I <json config>            build the node          -> "ok <code bytes> <heap used>"
    R <now> <src> <base64>     a datagram arrived      -> effects
    T <now>                    its deadline came       -> effects
    H / L <now>                hold / release a batch  -> effects
    M                          the heap now            -> "mem <used> <free> <peak used>
                                                           <applied> <commit>"

Effects: "e <deadline or -> [<dst> <base64>]...": the sends, in order, after the flash
write they wait for. A memory error ends the run with "oom <where> <used> <free>".
"""

import gc
import json
import sys
from binascii import a2b_base64, b2a_base64

gc.collect()
_BASE = gc.mem_alloc()

import roost.node.mqtt_codec  # noqa: E402,F401  (the node's MQTT packets: its code counts)
from roost.common.channel import Channel  # noqa: E402
from roost.common.prng import Prng  # noqa: E402
from roost.hardware.boards import make_sensors  # noqa: E402
from roost.node.effects import PERSIST, SEND  # noqa: E402
from roost.node.gossip import GossipConfig  # noqa: E402
from roost.node.host import HostConfig, make_host_factory  # noqa: E402
from roost.node.kv import KvConfig  # noqa: E402
from roost.node.paxos import PaxosConfig  # noqa: E402
from roost.node.storage import DirStorage  # noqa: E402

gc.collect()
CODE = gc.mem_alloc() - _BASE


class Node:
    def __init__(self, cfg):
        me = cfg["node_id"]
        wifi = cfg.get("preset") == "wifi"
        g = dict(cfg.get("gossip", {}))
        g["seeds"] = tuple(sorted(cfg["members"]))
        g["board"] = cfg.get("board", "")
        gcfg = GossipConfig.wifi(**g) if wifi else GossipConfig.lan(**g)
        h = dict(cfg.get("host", {}))
        h["group"] = cfg["group"]
        hcfg = HostConfig.wifi(**h) if wifi else HostConfig.lan(**h)
        p = cfg.get("paxos", {})
        pcfg = PaxosConfig.wifi(**p) if wifi else PaxosConfig.lan(**p)
        kcfg = KvConfig.wifi() if wifi else KvConfig.lan()

        def sensors(node_id, now):
            return make_sensors(cfg.get("board", "esp32"), simulated=True, seed=7)

        group = sorted(cfg["replicas"]) if me in cfg["replicas"] else None  # else a member
        factory = make_host_factory(gcfg, group, kcfg, pcfg, sensors, hcfg)
        self.flash = DirStorage(cfg["flash"], sync=False)
        ch = Channel(me, cfg["key"], incarnation=cfg.get("incarnation", 1))
        self.host = factory(me, ch, self.flash.boot_state(), Prng(cfg.get("seed", 1)), 0)
        self.peak = 0

    def run(self, effects):
        out = ["e", "-"]
        for e in effects or ():
            if e[0] == SEND:
                out.append(e[1])
                out.append(b2a_base64(e[2]).decode().strip())
            elif e[0] == PERSIST:
                self.flash.stage(e[1], e[2])
        if self.flash.pending():
            self.flash.commit()
        d = self.host.next_deadline_ms()
        out[1] = "-" if d is None else str(d)
        used = gc.mem_alloc()
        if used > self.peak:
            self.peak = used
        return " ".join(out)


def step(node, line):
    w = line.split()
    op = w[0]
    h = node.host
    if op == "R":
        return node.run(h.receive(int(w[1]), w[2], a2b_base64(w[3].encode())))
    if op == "T":
        return node.run(h.tick(int(w[1])))
    if op == "H":
        h.hold()
        return "e - "
    if op == "L":
        return node.run(h.release(int(w[1])))
    if op == "M":
        gc.collect()
        px = h.replica.paxos if h.replica is not None else None
        return "mem %d %d %d %d %d" % (gc.mem_alloc(), gc.mem_free(), node.peak,
                                       -1 if px is None else px.applied_index,
                                       -1 if px is None else px.commit_index)
    return "bad %s" % op


_node = None


def handle(line):
    """One request line -> one answer line (the WebAssembly runner calls this)."""
    global _node
    try:
        if line.startswith("I "):
            _node = Node(json.loads(line[2:]))
            gc.collect()
            return "ok %d %d" % (CODE, gc.mem_alloc())
        return step(_node, line)
    except MemoryError:
        return "oom %s %d %d" % (line[:1], gc.mem_alloc(), gc.mem_free())
    except Exception as ex:  # a bug, not the heap: the bench stops and says which
        import io

        buf = io.StringIO()
        sys.print_exception(ex, buf)
        return "err %s %s" % (line[:1], buf.getvalue().replace("\n", " | "))


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        ans = handle(line.strip())
        sys.stdout.write(ans + "\n")
        sys.stdout.flush()  # noqa (unix port: a line at a time)
        if ans.startswith("oom"):
            return


if __name__ == "__main__":
    main()
