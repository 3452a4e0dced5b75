"""Zeroconf discovery: nodes, the gateway and the broker find each other on a LAN.

CPython only (python-zeroconf). A board cannot run python-zeroconf: it uses the seeds in its
config (see docs/discovery.md); a Pi node, the gateway and the tools use this module.

- ``advertise(node_id, fleet, port, role, props)`` registers ``<fleet>-<id>._roost._udp.local.``
  with TXT ``v=1 fleet=… id=… role=… port=… board=…`` (plus ``props``); ``handle.close()``
  withdraws it (a goodbye packet, so browsers forget it at once).
- ``advertise_broker(port, fleet=…, key=…)`` registers the broker under the standard MQTT
  type ``_mqtt._tcp.local.``; ``find_broker(timeout_s)`` returns ``mqtt://host:port`` URLs
  (``mqtts://`` when its TXT says ``tls=1``), brokers of this fleet first. With the fleet
  key, the record carries its addresses and their HMAC (``addr=… sig=…``): a node that
  logs in with a password takes only such a record (``find_broker(key=…, signed_only=True)``),
  so an mDNS answer forged by a neighbour cannot collect the password.
- ``browse(fleet, timeout_s, seeds=…)`` returns the fleet's peers as ``Peer(id, address,
  port, props, source)``; when nothing answers within ``timeout_s`` it returns the configured
  seeds instead (``source == "seed"``). ``find_broker`` falls back the same way.

Remote records are input like any other: a record with a missing or invalid id, another
fleet's name, no IPv4 address or a bad port is skipped and counted in ``stats`` (a dict the
caller may pass) as ``rx_rejected_<reason>``; nothing a neighbour advertises raises here.

``python -m roost.gateway.discovery advertise|browse|broker|find-broker …`` is a small command
line over the same functions (used by the namespace tests; ``--json`` for machines).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from roost.common.ids import is_valid_id

ROOST_TYPE = "_roost._udp.local."
MQTT_TYPE = "_mqtt._tcp.local."
TXT_VERSION = "1"
ROLES = ("node", "gateway", "broker", "client")
_TXT_ITEM_MAX = 255  # DNS-SD: one key=value string is at most 255 bytes
_SIG_HEX = 32  # a broker record's HMAC-SHA256, truncated to 128 bits (hex)


class Peer(NamedTuple):
    """A node found on the LAN (source "mdns") or taken from the config (source "seed")."""

    id: str
    address: str
    port: int
    props: dict
    source: str = "mdns"


class Advertisement:
    """A registered service; ``close()`` withdraws it and stops the responder."""

    def __init__(self, zc, info) -> None:
        self._zc = zc
        self.info = info
        self.name = info.name
        self.addresses = info.parsed_addresses()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._zc.unregister_service(self.info)
        finally:
            self._zc.close()

    def __enter__(self) -> Advertisement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- interfaces and addresses ----

def _adapters() -> list[tuple[str, str, int]]:
    """(interface name, IPv4 address, prefix length) of this machine, sorted."""
    import ifaddr

    out = []
    for ad in ifaddr.get_adapters():
        for ip in ad.ips:
            if isinstance(ip.ip, str):
                out.append((ad.nice_name, ip.ip, ip.network_prefix))
    return sorted(out)


def interface_addresses(interfaces: Sequence[str] | None = None) -> list[str]:
    """IPv4 addresses to serve on: the given interface names or addresses, else every
    non-loopback address (loopback only when there is nothing else)."""
    ads = _adapters()
    if interfaces is None:
        found = [a for _, a, _ in ads if not ipaddress.ip_address(a).is_loopback]
        return found or [a for _, a, _ in ads]
    if isinstance(interfaces, str):
        raise ValueError("interfaces must be a list of interface names or IPv4 addresses")
    found = []
    for want in interfaces:
        try:
            ipaddress.IPv4Address(want)
            found.append(want)
            continue
        except ValueError:
            pass
        hits = [a for name, a, _ in ads if name == want]
        if not hits:
            raise ValueError("interface %r has no IPv4 address here" % (want,))
        found.extend(hits)
    return sorted(set(found))


def _zeroconf(interfaces: Sequence[str] | None):
    from zeroconf import InterfaceChoice, IPVersion, Zeroconf

    if interfaces is None:
        return Zeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
    return Zeroconf(interfaces=interface_addresses(interfaces), ip_version=IPVersion.V4Only)


def _label(s: str) -> str:
    """A DNS label from an id: letters, digits and '-'."""
    return "".join(c if c.isalnum() else "-" for c in s)[:63] or "x"


def _txt(props: Mapping[str, object]) -> dict[str, str]:
    out = {}
    for k in sorted(props):
        v = props[k]
        if not isinstance(k, str) or not k or "=" in k:
            raise ValueError("TXT key %r must be a non-empty string without '='" % (k,))
        v = "" if v is None else str(v)
        if len((k + "=" + v).encode()) > _TXT_ITEM_MAX:
            raise ValueError("TXT item %s is longer than 255 bytes" % k)
        out[k] = v
    return out


def _decode_props(raw: Mapping | None) -> dict[str, str] | None:
    """TXT properties from the wire as str -> str; None when they are not UTF-8."""
    out = {}
    try:
        for k, v in (raw or {}).items():
            ks = k.decode() if isinstance(k, bytes) else str(k)
            vs = "" if v is None else (v.decode() if isinstance(v, bytes) else str(v))
            out[ks] = vs
    except UnicodeDecodeError:
        return None
    return out


def _count(stats: dict | None, reason: str) -> None:
    if stats is not None:
        key = "rx_rejected_" + reason
        stats[key] = stats.get(key, 0) + 1


# ---- advertising ----

def advertise(node_id: str, fleet: str, port: int, role: str = "node",
              props: Mapping[str, object] | None = None,
              interfaces: Sequence[str] | None = None, board: str = "pi",
              addresses: Sequence[str] | None = None) -> Advertisement:
    """Register this node (or gateway) under ``_roost._udp.local.``; returns the handle.

    ``interfaces``: interface names or IPv4 addresses to answer on (default: all);
    ``addresses``: the addresses to publish (default: those of ``interfaces``).
    """
    if not is_valid_id(node_id):
        raise ValueError("node id %r is not a valid id" % (node_id,))
    if not is_valid_id(fleet):
        raise ValueError("fleet %r is not a valid id" % (fleet,))
    if role not in ROLES:
        raise ValueError("role must be one of " + ", ".join(ROLES))
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("port must be 1..65535")
    txt = dict(props or {})
    txt.update({"v": TXT_VERSION, "fleet": fleet, "id": node_id, "role": role,
                "port": port, "board": board})
    name = "%s-%s.%s" % (_label(fleet), _label(node_id), ROOST_TYPE)
    server = "roost-%s-%s.local." % (_label(fleet), _label(node_id))
    return _register(ROOST_TYPE, name, server, port, _txt(txt), interfaces, addresses)


def broker_instance(fleet: str | None, tls: bool = False) -> str:
    """The broker's zeroconf instance name: roost-<fleet>-broker[-tls]."""
    return "roost-%s-broker%s" % (fleet or "any", "-tls" if tls else "")


def broker_sig(key: str, fleet: str, port: int, tls: str, addrs: str) -> str:
    """The HMAC a broker record carries: over its fleet, port, TLS flag and addresses."""
    msg = "roost-broker|%s|%d|%s|%s" % (fleet, port, tls, addrs)
    return hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()[:_SIG_HEX]


def advertise_broker(port: int = 1883, fleet: str | None = None, tls: bool = False,
                     interfaces: Sequence[str] | None = None,
                     addresses: Sequence[str] | None = None,
                     instance: str | None = None, key: str | None = None) -> Advertisement:
    """Register an MQTT broker under the standard ``_mqtt._tcp.local.`` type; with the fleet
    key (and a fleet), its addresses go in the TXT record, signed."""
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("port must be 1..65535")
    if fleet is not None and not is_valid_id(fleet):
        raise ValueError("fleet %r is not a valid id" % (fleet,))
    if key and fleet is None:
        raise ValueError("a signed broker record needs its fleet")
    txt: dict[str, object] = {"tls": "1" if tls else "0"}
    addrs = _addresses(interfaces, addresses)
    if fleet is not None:
        txt["fleet"] = fleet
    if key and fleet is not None:
        joined = ",".join(addrs)
        if len(("addr=" + joined).encode()) > _TXT_ITEM_MAX:
            # more addresses than one TXT item holds (container bridges, VPNs): give the
            # LAN's address (--host) to sign, or the record goes out unsigned
            print("roost: %d addresses do not fit one signed zeroconf record: advertised "
                  "unsigned (nodes with an MQTT password will not take it); give the LAN "
                  "address with --host" % len(addrs), file=sys.stderr)
        else:
            txt["addr"] = joined
            txt["sig"] = broker_sig(key, fleet, port, txt["tls"], joined)
    base = _label(instance or broker_instance(fleet))
    name = "%s.%s" % (base, MQTT_TYPE)
    return _register(MQTT_TYPE, name, base + ".local.", port, _txt(txt), interfaces, addrs)


def _addresses(interfaces: Sequence[str] | None, addresses: Sequence[str] | None) -> list[str]:
    addrs = list(addresses) if addresses else interface_addresses(interfaces)
    for a in addrs:
        ipaddress.IPv4Address(a)  # ValueError for a bad address
    return addrs


def _register(type_, name, server, port, txt, interfaces, addresses) -> Advertisement:
    from zeroconf import ServiceInfo

    addrs = _addresses(interfaces, addresses)
    info = ServiceInfo(type_, name, port=port, properties=txt, server=server,
                       parsed_addresses=addrs)
    zc = _zeroconf(interfaces)
    try:
        zc.register_service(info, allow_name_change=True)
    except BaseException:
        zc.close()
        raise
    return Advertisement(zc, info)


# ---- browsing ----

def _browse_type(type_: str, timeout_s: float, interfaces: Sequence[str] | None,
                 enough) -> list:
    """Resolved ServiceInfos of ``type_`` seen within timeout_s (or until enough(infos))."""
    from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange

    if not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 300:
        raise ValueError("timeout_s must be above 0 and at most 300 seconds")
    names: set[str] = set()
    lock = threading.Lock()
    wake = threading.Event()

    def on_change(zeroconf, service_type, name, state_change) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            with lock:
                names.add(name)
            wake.set()

    deadline = time.monotonic() + timeout_s
    zc = _zeroconf(interfaces)
    resolved: dict[str, object] = {}
    try:
        browser = ServiceBrowser(zc, type_, handlers=[on_change])
        try:
            while True:
                with lock:
                    todo = sorted(names - set(resolved))
                for name in todo:
                    left_ms = int((deadline - time.monotonic()) * 1000)
                    if left_ms <= 0:
                        break
                    info = ServiceInfo(type_, name)
                    if info.request(zc, min(left_ms, 1500)):
                        resolved[name] = info
                infos = [resolved[n] for n in sorted(resolved)]
                left = deadline - time.monotonic()
                if left <= 0 or enough(infos):
                    return infos
                wake.wait(min(left, 0.1))
                wake.clear()
        finally:
            browser.cancel()
    finally:
        zc.close()


def _pick_address(addrs: Iterable[str]) -> str | None:
    """The first IPv4 address sharing a network with one of ours, else the first one. An
    address no peer on the LAN can have (loopback, multicast, 0.0.0.0) is never taken: a
    forged record must not point a node at itself or at the mDNS group."""
    ok = []
    for a in addrs:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_multicast or ip.is_unspecified):
            ok.append(a)
    addrs = sorted(ok)
    if not addrs:
        return None
    nets = [ipaddress.ip_network("%s/%d" % (a, p), strict=False)
            for _, a, p in _adapters() if 0 < p <= 32]
    for a in addrs:
        ip = ipaddress.ip_address(a)
        if any(ip in n for n in nets if not n.is_loopback):
            return a
    return addrs[0]


def _peer_from(info, fleet: str, stats: dict | None) -> Peer | None:
    props = _decode_props(info.properties)
    if props is None:
        _count(stats, "malformed")
        return None
    if props.get("fleet") != fleet:
        _count(stats, "other_fleet")
        return None
    node_id = props.get("id", "")
    if not is_valid_id(node_id):
        _count(stats, "bad_id")
        return None
    port = info.port
    if not isinstance(port, int) or not 0 < port < 65536:
        _count(stats, "bad_port")
        return None
    addr = _pick_address(info.parsed_addresses(_v4()))
    if addr is None:
        _count(stats, "no_address")
        return None
    return Peer(node_id, addr, port, props, "mdns")


def _v4():
    from zeroconf import IPVersion

    return IPVersion.V4Only


def parse_seed(seed: str) -> Peer:
    """``"n01@10.0.0.5:7001"`` -> Peer("n01", "10.0.0.5", 7001, {}, "seed")."""
    if not isinstance(seed, str) or "@" not in seed or ":" not in seed:
        raise ValueError("seed %r must look like id@host:port" % (seed,))
    node_id, rest = seed.split("@", 1)
    host, port_s = rest.rsplit(":", 1)
    if not is_valid_id(node_id) or not host or not port_s.isdigit():
        raise ValueError("seed %r must look like id@host:port" % (seed,))
    port = int(port_s)
    if not 0 < port < 65536:
        raise ValueError("seed %r: port must be 1..65535" % (seed,))
    return Peer(node_id, host, port, {}, "seed")


def _seed_peers(seeds) -> list[Peer]:
    if not seeds:
        return []
    if isinstance(seeds, str):
        raise ValueError("seeds must be a list of id@host:port or a dict id -> (host, port)")
    if isinstance(seeds, Mapping):
        out = []
        for node_id in sorted(seeds):
            host, port = seeds[node_id]
            out.append(parse_seed("%s@%s:%s" % (node_id, host, port)))
        return out
    return sorted((parse_seed(s) for s in seeds), key=lambda p: p.id)


def browse(fleet: str, timeout_s: float = 3.0, interfaces: Sequence[str] | None = None,
           seeds=None, expect: int | None = None, role: str | None = None,
           exclude: Iterable[str] = (), stats: dict | None = None) -> list[Peer]:
    """The fleet's peers seen on the LAN within ``timeout_s``, sorted by id.

    Returns as soon as ``expect`` peers are known; without ``expect`` it listens for the whole
    ``timeout_s``. ``role`` keeps only that role; ``exclude`` drops ids (usually our own).
    The ``seeds`` (``["id@host:port", ...]`` or a dict ``{id: (host, port)}``) nobody
    answered for come too, with source "seed": when nobody answers, the seeds alone.
    """
    if not is_valid_id(fleet):
        raise ValueError("fleet %r is not a valid id" % (fleet,))
    if expect is not None and (not isinstance(expect, int) or expect < 1):
        raise ValueError("expect must be a positive count")
    fallback = _seed_peers(seeds)  # a bad seed is the caller's mistake: raise before waiting
    skip = set(exclude)

    def peers_of(infos, counts) -> list[Peer]:
        seen: dict[str, Peer] = {}
        for info in infos:
            p = _peer_from(info, fleet, counts)
            if p is None or p.id in skip or (role is not None and p.props.get("role") != role):
                continue
            # the record under the name advertise() gives that id wins over any other that
            # claims it (an earlier name in the sort order could be a forgery)
            own = getattr(info, "name", None) == "%s-%s.%s" % (_label(fleet), _label(p.id),
                                                               ROOST_TYPE)
            if own or p.id not in seen:
                seen[p.id] = p
        return [seen[k] for k in sorted(seen)]

    def enough(infos) -> bool:
        return expect is not None and len(peers_of(infos, None)) >= expect  # counts once, below

    found = peers_of(_browse_type(ROOST_TYPE, timeout_s, interfaces, enough), stats)
    # the configured seeds stay: an answer (perhaps forged, mDNS has no authentication)
    # adds peers, it does not take the seeds away
    ids = {p.id for p in found}
    out = found + [p for p in fallback if p.id not in skip and p.id not in ids]
    return sorted(out, key=lambda p: p.id)


def _broker_urls(infos, fleet: str | None, stats: dict | None, key: str | None = None,
                 signed_only: bool = False) -> list[str]:
    """mqtt[s]://addr:port of each broker record: this fleet's first, then fleetless ones.
    With the fleet key, records signed with it come first, at the addresses they sign; a
    record whose signature does not hold is skipped, and so is an unsigned one when
    signed_only (a node that would give it a password)."""
    signed, mine, anyone = [], [], []
    for info in infos:
        props = _decode_props(info.properties)
        if props is None:
            _count(stats, "malformed")
            continue
        theirs = props.get("fleet")
        if fleet is not None and theirs not in (None, "", fleet):
            _count(stats, "other_fleet")
            continue
        port = info.port
        if not isinstance(port, int) or not 0 < port < 65536:
            _count(stats, "no_address")
            continue
        tls = props.get("tls", "")
        sig = props.get("sig")
        if key and sig is not None:
            if (not theirs or len(sig) != _SIG_HEX or sig.strip("0123456789abcdef")
                    or not hmac.compare_digest(sig, broker_sig(key, theirs, port, tls,
                                                               props.get("addr", "")))):
                _count(stats, "bad_signature")
                continue
            addrs = props.get("addr", "").split(",")
        elif key and signed_only:
            _count(stats, "unsigned")
            continue
        else:
            addrs = info.parsed_addresses(_v4())
        addr = _pick_address(addrs)
        if addr is None:
            _count(stats, "no_address")
            continue
        url = "%s://%s:%d" % ("mqtts" if tls == "1" else "mqtt", addr, port)
        if key and sig is not None:
            signed.append(url)
        else:
            (mine if fleet is not None and theirs == fleet else anyone).append(url)
    out: list[str] = []
    for group in (signed, mine):
        group.sort(key=lambda u: not u.startswith("mqtts://"))  # never TLS after a plain one
    for u in signed + mine + anyone:
        if u not in out:
            out.append(u)
    return out


def find_broker(timeout_s: float = 3.0, fleet: str | None = None,
                interfaces: Sequence[str] | None = None, seeds: Sequence[str] = (),
                stats: dict | None = None, expect: int | None = None,
                key: str | None = None, signed_only: bool = False) -> list[str]:
    """MQTT broker URLs seen on the LAN: this fleet's brokers first (with ``key``, those
    signed with it before all), then brokers that name no fleet; brokers of another fleet
    are skipped. Falls back to ``seeds`` (URLs)."""
    if fleet is not None and not is_valid_id(fleet):
        raise ValueError("fleet %r is not a valid id" % (fleet,))
    if isinstance(seeds, str):
        raise ValueError("seeds must be a list of URLs")
    for s in seeds:
        if not isinstance(s, str) or "://" not in s:
            raise ValueError("broker seed %r must be a URL like mqtt://host:1883" % (s,))

    def enough(infos) -> bool:  # with the key, only signed records end the wait early
        return expect is not None and len(_broker_urls(infos, fleet, None, key,
                                                       bool(key))) >= expect

    found = _broker_urls(_browse_type(MQTT_TYPE, timeout_s, interfaces, enough), fleet, stats,
                         key, signed_only)
    return found or list(seeds)


# ---- command line (python -m roost.gateway.discovery ...) ----

def _hold(adv: Advertisement, for_s: float | None, line: str) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(line, flush=True)
    try:
        stop.wait(for_s)
    finally:
        adv.close()
    return 0


def add_discover_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost discover advertise|browse|broker|find-broker``."""
    p = sub.add_parser("discover", help="find the fleet and its broker on the LAN (zeroconf)",
                       description="Advertise and browse a roost fleet and its MQTT broker "
                       "with mDNS (zeroconf), falling back to configured seeds.")
    _add_commands(p)
    p.set_defaults(handler=_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m roost.gateway.discovery",
                                 description="zeroconf discovery for a roost fleet")
    _add_commands(ap)
    return _run(ap.parse_args(argv))


def _add_commands(ap: argparse.ArgumentParser) -> None:
    sub = ap.add_subparsers(dest="cmd", metavar="ACTION")
    sub.required = True
    a = sub.add_parser("advertise", help="advertise a node until stopped")
    a.add_argument("--fleet", required=True)
    a.add_argument("--id", required=True)
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--role", default="node", choices=ROLES)
    a.add_argument("--board", default="pi")
    a.add_argument("--prop", action="append", default=[], help="extra TXT item key=value")
    a.add_argument("--interface", action="append", help="interface name or IPv4 address")
    a.add_argument("--for", dest="for_s", type=float, help="seconds, then withdraw")
    b = sub.add_parser("browse", help="list the fleet's peers")
    b.add_argument("--fleet", required=True)
    b.add_argument("--timeout", type=float, default=3.0)
    b.add_argument("--expect", type=int)
    b.add_argument("--seed", action="append", default=[], help="fallback id@host:port")
    b.add_argument("--interface", action="append")
    b.add_argument("--json", action="store_true")
    m = sub.add_parser("broker", help="advertise an MQTT broker until stopped")
    m.add_argument("--port", type=int, default=1883)
    m.add_argument("--fleet")
    m.add_argument("--tls", action="store_true")
    m.add_argument("--interface", action="append")
    m.add_argument("--for", dest="for_s", type=float)
    f = sub.add_parser("find-broker", help="list MQTT brokers on the LAN")
    f.add_argument("--fleet")
    f.add_argument("--timeout", type=float, default=3.0)
    f.add_argument("--expect", type=int)
    f.add_argument("--seed", action="append", default=[], help="fallback URL")
    f.add_argument("--interface", action="append")
    f.add_argument("--json", action="store_true")


def _run(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "for_s", None) is not None and not 0 < args.for_s <= 86400:
            raise ValueError("--for must be more than 0 and at most 86400 seconds")
        if args.cmd == "advertise":
            props = {}
            for item in args.prop:
                if "=" not in item:
                    raise ValueError("--prop %r must be key=value" % item)
                k, v = item.split("=", 1)
                props[k] = v
            adv = advertise(args.id, args.fleet, args.port, args.role, props,
                            interfaces=args.interface, board=args.board)
            return _hold(adv, args.for_s, "advertising %s on %s" % (
                adv.name, ",".join(adv.addresses)))
        if args.cmd == "broker":
            adv = advertise_broker(args.port, fleet=args.fleet, tls=args.tls,
                                   key=os.environ.get("ROOST_FLEET_KEY") if args.fleet else None,
                                   interfaces=args.interface)
            return _hold(adv, args.for_s, "advertising %s on %s" % (
                adv.name, ",".join(adv.addresses)))
        if args.cmd == "browse":
            stats: dict = {}
            peers = browse(args.fleet, args.timeout, interfaces=args.interface,
                           seeds=args.seed, expect=args.expect, stats=stats)
            if args.json:
                print(json.dumps({"peers": [p._asdict() for p in peers], "stats": stats},
                                 sort_keys=True))
            else:
                for p in peers:
                    print("%s %s:%d %s %s" % (p.id, p.address, p.port, p.source,
                                              p.props.get("role", "")))
                if not peers:
                    print("no peers found")
            return 0
        urls = find_broker(args.timeout, fleet=args.fleet, interfaces=args.interface,
                           seeds=args.seed, expect=args.expect)
        if args.json:
            print(json.dumps({"brokers": urls}))
        else:
            print("\n".join(urls) if urls else "no broker found")
        return 0
    except ValueError as e:
        print("roost discover: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
