"""Network-namespace fabric for root-mode chaos: real links to pull, real loss.

CPython only; needs root and ``ip`` (iproute2); partitions need ``nft`` (nftables); loss uses
``tc ... netem`` when the kernel has it and an nftables random-drop rule otherwise.

The shape (one run, everything prefixed with its run id so parallel runs never collide)::

    namespace roost-<run>             a bridge "br0"; one port "p<i>" per host
    namespace roost-<run>-<host>      "lo" and "eth0" (10.213.0.<i+2>/24), the peer of p<i>

The test subnet (``10.213.0.0/24`` by default) exists only inside these namespaces: the root
namespace gets no address, route or rule, so no test traffic ever reaches a real network.
Each run has its own bridge, so two runs may use the same subnet.

Faults, all carried out in the bridge namespace (the switch), never in the hosts:

- ``link_down(host)`` / ``link_up(host)``: the host's bridge port goes down — the cable is
  pulled; the host sees NO-CARRIER and keeps its address and routes.
- ``partition([[a, b], [c, d]])``: one nftables table (``bridge roost``) drops frames between
  ports of different groups; hosts named in no group form one more group together.
- ``loss(host, rate)``: ``netem loss`` on both ends of the host's veth when the kernel has
  netem; otherwise a ``numgen random`` drop rule in the same nftables table, both directions.
- ``heal()``: every link up, no partition, no loss.

State is saved (``state_path``, by default ``/run/roost-netns/<run>.json``) so a separate
``roost chaos`` process can ``Fabric.attach(path)`` and act on a running fabric.
``teardown()`` (also ``with Fabric(...) as fab:``) stops the processes started in the run's
namespaces and deletes them (their veths and the bridge go with them);
``cleanup_stale()`` removes what earlier runs left when their owner process is gone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence

PREFIX = "roost-"
DEFAULT_SUBNET = "10.213.0.0/24"
STATE_DIR = "/run/roost-netns"
_HOST_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
_RUN_RE = re.compile(r"^[a-z0-9]{4,16}$")
_CMD_TIMEOUT_S = 20  # one ip/tc/nft invocation; they take milliseconds unless the kernel is stuck
_STOP_GRACE_S = 3.0  # SIGTERM, then this long, then SIGKILL


class NetnsError(RuntimeError):
    """A namespace operation failed; the message is one sentence with the command."""


def missing_tools() -> list[str]:
    """Names of what root mode needs and this machine lacks (empty list: ready)."""
    out = []
    if os.geteuid() != 0:
        out.append("root")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            out.append(tool)
    return out


def _run(argv: Sequence[str], check: bool = True, input_text: str | None = None) -> str:
    try:
        r = subprocess.run(list(argv), capture_output=True, text=True, input=input_text,
                           timeout=_CMD_TIMEOUT_S)
    except FileNotFoundError as e:
        raise NetnsError("%s is not installed (apt-get install iproute2 nftables)"
                         % argv[0]) from e
    except subprocess.TimeoutExpired as e:
        raise NetnsError("%s timed out" % " ".join(argv)) from e
    if check and r.returncode != 0:
        raise NetnsError("%s failed: %s" % (" ".join(argv), (r.stderr or r.stdout).strip()))
    return r.stdout


def list_namespaces() -> list[str]:
    """Names of all network namespaces (``ip netns list``), sorted."""
    out = _run(["ip", "netns", "list"], check=False)
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start is None:
        return True
    return _proc_start(pid) == start


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks (guards against a reused pid)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _stop_pids(pids: Iterable[int], grace_s: float = _STOP_GRACE_S) -> None:
    pids = sorted(set(pids))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    live = pids
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = [p for p in live if _pid_alive(p, None) and not _is_zombie(p)]
    for pid in live:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_zombie(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def _ns_pids(ns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in out.split() if x.isdigit()]


def _delete_run(run_id: str, state_dir: str) -> list[str]:
    """Stop the processes inside a run's namespaces and delete them; returns names deleted."""
    mine = [ns for ns in list_namespaces()
            if ns == PREFIX + run_id or ns.startswith(PREFIX + run_id + "-")]
    pids: list[int] = []
    for ns in mine:
        pids.extend(_ns_pids(ns))
    # only processes living in this run's own namespaces: every one of them was started for it
    _stop_pids(p for p in pids if p != os.getpid())
    for ns in mine:
        _run(["ip", "netns", "delete", ns], check=False)
    try:
        os.unlink(os.path.join(state_dir, run_id + ".json"))
    except OSError:
        pass
    return mine


def cleanup_stale(state_dir: str = STATE_DIR, keep: Iterable[str] = ()) -> list[str]:
    """Delete namespaces of earlier runs whose owner process is gone; returns their names.

    A run is stale when its state file is missing or names an owner pid that no longer runs.
    Runs listed in ``keep`` and runs with a live owner (a parallel run) are left alone.
    """
    keep = set(keep)
    runs = sorted({ns[len(PREFIX):].split("-", 1)[0] for ns in list_namespaces()
                   if ns.startswith(PREFIX)})
    removed: list[str] = []
    for run in runs:
        if run in keep or not _RUN_RE.match(run):
            continue
        try:
            with open(os.path.join(state_dir, run + ".json")) as f:
                st = json.load(f)
            alive = _pid_alive(int(st["owner_pid"]), st.get("owner_start"))
        except (OSError, ValueError, KeyError, TypeError):
            alive = False
        if not alive:
            removed.extend(_delete_run(run, state_dir))
    return removed


class Fabric:
    """N host namespaces on one bridge, with links to pull and loss to add.

    ``Fabric(["n01", "n02", "gw"])`` builds everything (root only); ``fab.address("n01")`` is
    the host's IPv4 address; ``fab.run_in("n01", argv)`` starts a process inside it.
    """

    def __init__(self, hosts: Sequence[str], subnet: str = DEFAULT_SUBNET,
                 run_id: str | None = None, state_dir: str = STATE_DIR,
                 owner_pid: int | None = None, _attach: Mapping | None = None) -> None:
        self.state_dir = state_dir
        self.procs: list[subprocess.Popen] = []
        self._attached_path: str | None = None  # the file attach() read: saves go there
        if _attach is not None:
            self._from_state(_attach)
            return
        hosts = list(hosts)
        if not hosts:
            raise ValueError("a fabric needs at least one host")
        for h in hosts:
            if not isinstance(h, str) or not _HOST_RE.match(h):
                raise ValueError("host name %r must be 1 to 32 lower-case letters, digits,"
                                 " '.', '_' or '-'" % (h,))
        if len(set(hosts)) != len(hosts):
            raise ValueError("host names must be distinct")
        net = ipaddress.ip_network(subnet, strict=True)
        if net.version != 4 or not net.is_private:
            raise ValueError("subnet %s must be a private IPv4 network" % subnet)
        if len(hosts) + 2 > net.num_addresses - 1:
            raise ValueError("subnet %s is too small for %d hosts" % (subnet, len(hosts)))
        missing = missing_tools()
        if "root" in missing or "ip" in missing:
            raise NetnsError("network namespaces need " + " and ".join(missing))
        self.run_id = run_id or os.urandom(4).hex()
        if not _RUN_RE.match(self.run_id):
            raise ValueError("run id must be 4 to 16 lower-case letters or digits")
        self.subnet = str(net)
        self.hosts = hosts
        self.prefixlen = net.prefixlen
        self.addrs = {h: str(net.network_address + i + 2) for i, h in enumerate(hosts)}
        self.ports = {h: "p%d" % i for i, h in enumerate(hosts)}
        self.down: set[str] = set()
        self.groups: list[list[str]] = []
        self.loss_rate: dict[str, float] = {}
        self.netem = None  # decided on first loss(): True when the kernel has netem
        self.owner_pid = owner_pid or os.getpid()
        self.owner_start = _proc_start(self.owner_pid)
        try:
            self.save()  # first: a parallel cleanup_stale() sees a live owner, not strays
            self._build()
        except BaseException:
            self.teardown()
            raise

    # ---- naming and state ----

    @property
    def bridge_ns(self) -> str:
        return PREFIX + self.run_id

    def ns(self, host: str) -> str:
        """The namespace name of a host."""
        self._check_host(host)
        return PREFIX + self.run_id + "-" + host

    def address(self, host: str) -> str:
        """The host's IPv4 address inside the fabric."""
        self._check_host(host)
        return self.addrs[host]

    def _check_host(self, host: str) -> None:
        if host not in self.addrs:
            raise ValueError("unknown host %r (hosts: %s)" % (host, ", ".join(self.hosts)))

    @property
    def state_path(self) -> str:
        # attached from a file: saved back there, or each roost chaos would start from the
        # state recorded at build time (a link left down, a loss dropped, netem never undone)
        return self._attached_path or os.path.join(self.state_dir, self.run_id + ".json")

    def state(self) -> dict:
        return {"run_id": self.run_id, "subnet": self.subnet, "hosts": self.hosts,
                "addrs": self.addrs, "ports": self.ports, "prefixlen": self.prefixlen,
                "down": sorted(self.down), "groups": self.groups,
                "loss": {h: self.loss_rate[h] for h in sorted(self.loss_rate)},
                "netem": self.netem, "owner_pid": self.owner_pid,
                "owner_start": self.owner_start}

    def save(self, path: str | None = None) -> str:
        """Write the state (JSON) atomically; returns the path."""
        path = path or self.state_path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state(), f, sort_keys=True)
        os.replace(tmp, path)
        return path

    def _from_state(self, st: Mapping) -> None:
        self.run_id = st["run_id"]
        self.subnet = st["subnet"]
        self.hosts = list(st["hosts"])
        self.addrs = dict(st["addrs"])
        self.ports = dict(st["ports"])
        self.prefixlen = int(st["prefixlen"])
        self.down = set(st["down"])
        self.groups = [list(g) for g in st["groups"]]
        self.loss_rate = {h: float(r) for h, r in st["loss"].items()}
        self.netem = st["netem"]
        self.owner_pid = int(st["owner_pid"])
        self.owner_start = st.get("owner_start")

    @classmethod
    def attach(cls, path_or_run_id: str, state_dir: str = STATE_DIR) -> Fabric:
        """A Fabric for a running fabric built by another process (for ``roost chaos``)."""
        path = path_or_run_id
        if os.sep not in path and not path.endswith(".json"):
            path = os.path.join(state_dir, path + ".json")
        try:
            with open(path) as f:
                st = json.load(f)
        except (OSError, ValueError) as e:
            raise NetnsError("no fabric state at %s" % path) from e
        fab = cls((), state_dir=os.path.dirname(path) or ".", _attach=st)
        fab._attached_path = path
        if fab.bridge_ns not in list_namespaces():
            raise NetnsError("fabric %s is not running (namespace %s is gone)"
                             % (fab.run_id, fab.bridge_ns))
        return fab

    # ---- building and tearing down ----

    def _build(self) -> None:
        br = self.bridge_ns
        existing = set(list_namespaces())
        for ns in [br] + [self.ns(h) for h in self.hosts]:
            if ns in existing:
                raise NetnsError("namespace %s already exists" % ns)
        _run(["ip", "netns", "add", br])
        _run(["ip", "-n", br, "link", "set", "lo", "up"])
        _run(["ip", "-n", br, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", br, "link", "set", "br0", "up"])
        for h in self.hosts:
            ns, port = self.ns(h), self.ports[h]
            _run(["ip", "netns", "add", ns])
            # created straight inside the namespaces: no name ever appears in the root namespace
            _run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth",
                  "peer", "name", port, "netns", br])
            _run(["ip", "-n", br, "link", "set", port, "master", "br0"])
            _run(["ip", "-n", br, "link", "set", port, "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "addr", "add", "%s/%d" % (self.addrs[h], self.prefixlen),
                  "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            # multicast (mDNS) leaves through eth0; there is no default route on purpose
            _run(["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])

    def teardown(self) -> list[str]:
        """Stop every process in the run's namespaces, delete them; safe to call twice."""
        _stop_pids(p.pid for p in self.procs if p.poll() is None)
        for p in self.procs:
            try:
                p.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        return _delete_run(self.run_id, self.state_dir)

    def __enter__(self) -> Fabric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # ---- processes ----

    def run_in(self, host: str, argv: Sequence[str], **popen_kw: object) -> subprocess.Popen:
        """Start ``argv`` inside the host's namespace; Popen keywords pass through.

        ``ip netns exec`` execs the command in place, so the Popen's pid is the command's.
        """
        if not argv:
            raise ValueError("argv must not be empty")
        p = subprocess.Popen(self.wrap(host, argv), **popen_kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def wrap(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside the host (for subprocess.run and friends)."""
        return ["ip", "netns", "exec", self.ns(host)] + list(argv)

    def run_node_in(self, host: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
                    **popen_kw: object) -> subprocess.Popen:
        """Start a node process in the host's namespace (the fleet's root-mode hook).

        ``env`` is added to this process's environment; the child gets its own session so a
        Ctrl-C meant for the supervisor does not reach it; stdin is closed.
        """
        full_env = dict(os.environ)
        full_env.update(env or {})
        popen_kw.setdefault("start_new_session", True)
        popen_kw.setdefault("stdin", subprocess.DEVNULL)
        return self.run_in(host, argv, env=full_env, **popen_kw)

    # ---- faults ----

    def link_down(self, host: str) -> None:
        """Pull the host's cable: its bridge port goes down."""
        self._check_host(host)
        _run(["ip", "-n", self.bridge_ns, "link", "set", self.ports[host], "down"])
        self.down.add(host)
        self.save()

    def link_up(self, host: str) -> None:
        """Plug the host's cable back in."""
        self._check_host(host)
        _run(["ip", "-n", self.bridge_ns, "link", "set", self.ports[host], "up"])
        self.down.discard(host)
        self._forget_failed_neighbours()
        self.save()

    def partition(self, groups: Sequence[Sequence[str]],
                  everywhere: Sequence[str] = ()) -> None:
        """Only hosts in the same group hear each other; unnamed hosts form one more group,
        except those in ``everywhere``, which hear every group (clients, as in Jepsen)."""
        named: list[str] = []
        clean: list[list[str]] = []
        for g in groups:
            g = sorted(set(g))
            for h in g:
                self._check_host(h)
            named.extend(g)
            if g:
                clean.append(g)
        if len(set(named)) != len(named):
            raise ValueError("a host may be in only one group")
        rest = sorted(set(self.hosts) - set(named) - set(everywhere))
        if rest:
            clean.append(rest)
        self.groups = clean if len(clean) > 1 else []
        self._apply_rules()
        self._forget_failed_neighbours()
        self.save()

    def loss(self, host: str, rate: float) -> None:
        """Drop ``rate`` (0..1) of the frames to and from the host; 0 removes the loss."""
        self._check_host(host)
        if not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError("loss rate must be between 0 and 1")
        if self.netem is None:
            self.netem = self._netem_works()
        if rate > 0:
            self.loss_rate[host] = float(rate)
        else:
            self.loss_rate.pop(host, None)
        if self.netem:
            self._apply_netem(host, rate)
        else:
            self._apply_rules()
        self.save()

    def heal(self) -> None:
        """Every link up, no partition, no loss."""
        for h in self.hosts:
            _run(["ip", "-n", self.bridge_ns, "link", "set", self.ports[h], "up"])
        self.down.clear()
        old_loss = sorted(self.loss_rate)
        self.loss_rate.clear()
        self.groups = []
        if self.netem:
            for h in old_loss:
                self._apply_netem(h, 0.0)
        self._apply_rules()
        self._forget_failed_neighbours()
        self.save()

    def _forget_failed_neighbours(self) -> None:
        """After the links change, drop each host's address lookups that failed or are still
        failing: a lookup started while a path was cut would otherwise hold the first
        datagrams sent over the restored path, and drop them when it gives up (seen as 0 of 5
        datagrams arriving right after a partition that joined two hosts)."""
        for h in self.hosts:
            for state in ("incomplete", "failed"):
                _run(["ip", "-n", self.ns(h), "neigh", "flush", "nud", state], check=False)

    def _legs(self, host: str) -> list[tuple[str, str]]:
        """(namespace, device) of both ends of the host's veth."""
        return [(self.ns(host), "eth0"), (self.bridge_ns, self.ports[host])]

    def _netem_works(self) -> bool:
        ns, dev = self._legs(self.hosts[0])[0]
        if shutil.which("tc") is None:
            return False
        r = subprocess.run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "netem",
                            "loss", "0%"], capture_output=True, timeout=_CMD_TIMEOUT_S)
        if r.returncode != 0:
            return False
        _run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)
        return True

    def _apply_netem(self, host: str, rate: float) -> None:
        for ns, dev in self._legs(host):
            if rate > 0:
                _run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "netem", "loss",
                      "%.4f%%" % (rate * 100)])
            else:
                _run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)

    def rules_text(self) -> str:
        """The nftables script for the current partition and (non-netem) loss."""
        lines = ["table bridge roost {",
                 "  chain forward {",
                 "    type filter hook forward priority 0; policy accept;"]
        if not self.netem:
            for h in sorted(self.loss_rate):
                thr = int(round(self.loss_rate[h] * 1000000))
                for d in ("iifname", "oifname"):
                    lines.append('    %s "%s" numgen random mod 1000000 < %d counter drop'
                                 % (d, self.ports[h], thr))
        for i, g in enumerate(self.groups):
            for j, other in enumerate(self.groups):
                if i == j:
                    continue
                for a in g:
                    for b in other:
                        lines.append('    iifname "%s" oifname "%s" counter drop'
                                     % (self.ports[a], self.ports[b]))
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"

    def _apply_rules(self) -> None:
        need = bool(self.groups) or (bool(self.loss_rate) and not self.netem)
        if shutil.which("nft") is None:
            if need:
                raise NetnsError("partitions need nft (apt-get install nftables)")
            return  # without nft no table was ever made: nothing to remove
        # one atomic transaction: create (so delete cannot fail), delete, then the new table
        script = "table bridge roost\ndelete table bridge roost\n"
        if need:
            script += self.rules_text()
        _run(["ip", "netns", "exec", self.bridge_ns, "nft", "-f", "-"], input_text=script)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m roost.emulator.netns list|show RUN|down RUN|cleanup`` (root)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m roost.emulator.netns")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="runs with namespaces on this machine")
    for name, what in (("show", "print a run's state"), ("down", "tear a run down")):
        sub.add_parser(name, help=what).add_argument("run")
    sub.add_parser("cleanup", help="remove runs whose owner process is gone")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "list":
            runs = sorted({ns[len(PREFIX):].split("-", 1)[0] for ns in list_namespaces()
                           if ns.startswith(PREFIX)})
            print("\n".join(runs) if runs else "no runs")
        elif args.cmd == "show":
            print(json.dumps(Fabric.attach(args.run).state(), indent=1, sort_keys=True))
        elif args.cmd == "down":
            if not _RUN_RE.match(args.run):
                raise ValueError("run id must be 4 to 16 lower-case letters or digits")
            gone = _delete_run(args.run, STATE_DIR)
            print("removed %d namespaces" % len(gone))
        else:
            gone = cleanup_stale()
            print("removed %d namespaces" % len(gone))
    except (NetnsError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
