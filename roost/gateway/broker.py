"""Start an MQTT broker for a fleet: mosquitto when installed, else the embedded amqtt broker.

``start_broker(dir, port)`` writes a generated configuration into ``dir`` and starts the
broker as a child process listening on 127.0.0.1:port:

* mosquitto: a ``mosquitto.conf`` with persistence in ``dir`` (sessions and queued QoS 1
  messages survive a restart); with ``node_credentials`` a password file made by
  ``mosquitto_passwd`` and an ACL file so that node ``n03`` may publish only under
  ``roost/<fleet>/node/n03/#`` and into peers' inboxes ``roost/<fleet>/node/+/inbox``, and
  read the fleet's topics; an ``admin`` user (the gateway) may do anything under ``roost/``.
  ``tls=True`` adds a TLS listener on port+1 with a self-signed certificate (needs openssl).
* amqtt (``embedded=True`` or no mosquitto): the same listener, users and ACLs, run by
  ``python -m roost.gateway.broker --serve-embedded`` in a subprocess.

CPython only (gateway side).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from roost.common.ids import is_valid_id
from roost.emulator.lifeline import die_with_parent, raise_keyboard_interrupt
from roost.node.mqtt_codec import topic_matches

ADMIN_USER = "admin"


class BrokerError(Exception):
    """The broker could not be started (one clear sentence for the user)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_path() -> str | None:
    exe = shutil.which("mosquitto")
    if exe is None and os.path.exists("/usr/sbin/mosquitto"):  # not on a user's PATH
        exe = "/usr/sbin/mosquitto"
    return exe


def amqtt_available() -> bool:
    try:
        import amqtt.broker  # noqa: F401
    except ImportError:
        return False
    return True


def _wait_listening(port: int, proc: subprocess.Popen, timeout_s: float, log: Path,
                    addr: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise BrokerError("the broker exited at start-up (code %s): %s"
                              % (proc.returncode, text))
        try:
            with socket.create_connection((addr, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise BrokerError("the broker did not listen on %s:%d within %.0f s" % (addr, port, timeout_s))


def acl_rules(fleet: str, node_ids: list[str]) -> dict[str, dict[str, list[str]]]:
    """{user: {"publish": [filters], "subscribe": [filters]}} for the fleet's users."""
    from roost.node.nodemain import ha_node

    base = "roost/%s" % fleet
    # admin: the gateway, roost kv, and Home Assistant, which reads the discovery configs
    rules = {ADMIN_USER: {"publish": ["roost/#", "homeassistant/#"],
                          "subscribe": ["roost/#", "homeassistant/#"]}}
    for n in sorted(node_ids):
        rules[n] = {
            "publish": [base + "/node/%s/#" % n, base + "/node/+/inbox",
                        "homeassistant/sensor/%s/#" % ha_node(fleet, n)],
            "subscribe": [base + "/#"],
        }
    return rules


class BrokerHandle:
    """A running broker: ``url``, ``port``, ``kind`` ("mosquitto" or "amqtt"), ``stop()``,
    ``kill()`` (SIGKILL: a pulled plug), ``restart()`` (same port, same config and data)."""

    def __init__(self, kind: str, argv: list[str], directory: Path, port: int,
                 admin_password: str | None, tls_port: int | None,
                 host: str = "127.0.0.1") -> None:
        self.kind = kind
        self.argv = argv
        self.dir = directory
        self.port = port
        self.host = host  # the address it listens on ("0.0.0.0": every interface)
        self.tls_port = tls_port
        self.admin_password = admin_password
        self.proc: subprocess.Popen | None = None
        self.log = directory / ("%s.log" % kind)

    @property
    def url(self) -> str:
        return "mqtt://%s:%d" % (self._local(), self.port)

    def url_for(self, user: str, password: str) -> str:
        return "mqtt://%s:%s@%s:%d" % (user, password, self._local(), self.port)

    def _local(self) -> str:
        """The address a client on this machine uses."""
        return "127.0.0.1" if self.host == "0.0.0.0" else self.host

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout_s: float = 15.0, tied: bool = False) -> BrokerHandle:
        """Start the broker and wait until it listens. tied: it gets SIGTERM when this
        process ends, however it ends (``roost broker`` in the foreground; a fleet's broker
        outlives ``roost emulate up``)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        env = dict(os.environ)
        # the embedded broker imports this checkout of roost, whatever is installed
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                self.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(self.dir), env=env,
                # untied (a fleet's): its own session, so a Ctrl-C or a CI step's timeout
                # that signals the caller's process group does not pull the broker alone
                start_new_session=not tied,
                preexec_fn=die_with_parent(signal.SIGTERM) if tied else None)
        try:
            _wait_listening(self.port, self.proc, timeout_s, self.log, self._local())
        except (BrokerError, KeyboardInterrupt):  # not up, or stopped (Ctrl-C, kill) meanwhile
            self.kill()
            raise
        (self.dir / "broker.pid").write_text(str(self.proc.pid))
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the broker's plug is pulled."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> BrokerHandle:
        self.stop()
        return self.start()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "port": self.port, "pid": self.pid,
                "tls_port": self.tls_port, "dir": str(self.dir), "host": self.host}


def _hash_password(password: str, salt: str) -> str:
    return hashlib.sha256((salt + ":" + password).encode()).hexdigest()


def _make_cert(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError("TLS needs openssl to make a self-signed certificate; install openssl")
    cert, key = directory / "broker.crt", directory / "broker.key"
    if not cert.exists():
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
    return cert, key


def start_broker(directory: str | os.PathLike, port: int = 0,
                 node_credentials: dict[str, str] | None = None, tls: bool = False,
                 embedded: bool = False, fleet: str = "default",
                 admin_password: str | None = None, start: bool = True,
                 host: str = "127.0.0.1") -> BrokerHandle:
    """Generate a config in ``directory`` and start a broker on host:port (0: a free port).
    host is 127.0.0.1 (this machine only) unless the fleet's boards must reach it: a gateway
    Pi listens on "0.0.0.0" (every interface).

    node_credentials: {node_id: password}; with it anonymous clients are refused, each node
    gets the ACL of ``acl_rules`` and the admin user gets ``admin_password`` (generated when
    not given, see ``handle.admin_password``)."""
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    users: dict[str, str] = {}
    if node_credentials is not None:
        admin_password = admin_password or os.urandom(9).hex()
        users[ADMIN_USER] = admin_password
        for n, pw in sorted(node_credentials.items()):
            if n == ADMIN_USER or not pw or ":" in n:
                raise BrokerError("bad node credential for %r" % n)
            users[n] = pw
    tls_port = None
    mosq = None if embedded else mosquitto_path()
    if mosq is None and not amqtt_available():
        raise BrokerError("no MQTT broker: install mosquitto (apt) or amqtt (pip install amqtt)")
    if mosq is not None:
        lines = [
            "# generated by roost broker",
            "per_listener_settings false",
            "listener %d %s" % (port, host),
            "persistence true",
            "persistence_location %s/" % d,
            "autosave_interval 1",
            "max_queued_messages 10000",
            "max_inflight_messages 64",
            "log_dest file %s" % (d / "mosquitto.log"),
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # started as root mosquitto drops to user "mosquitto", who cannot read this dir
            import pwd

            lines.append("user %s" % pwd.getpwuid(0).pw_name)
        if tls:
            cert, key = _make_cert(d)
            tls_port = free_port()
            lines += ["listener %d %s" % (tls_port, host), "certfile %s" % cert,
                      "keyfile %s" % key]
        if users:
            pwfile = d / "passwd"
            pwfile.write_text("")
            os.chmod(pwfile, 0o600)
            mp = shutil.which("mosquitto_passwd")
            if mp is None:
                raise BrokerError("per-node credentials need mosquitto_passwd (package mosquitto)")
            for u, pw in sorted(users.items()):
                subprocess.run([mp, "-b", str(pwfile), u, pw], check=True, capture_output=True,
                               timeout=30)
            acl = []
            for u, rule in acl_rules(fleet, sorted(node_credentials or {})).items():
                acl.append("user %s" % u)
                for f in rule["publish"]:
                    acl.append("topic write %s" % f)
                for f in rule["subscribe"]:
                    acl.append("topic read %s" % f)
                acl.append("")
            (d / "acl").write_text("\n".join(acl))
            lines += ["allow_anonymous false", "password_file %s" % pwfile,
                      "acl_file %s" % (d / "acl")]
        else:
            lines.append("allow_anonymous true")
        conf = d / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        handle = BrokerHandle("mosquitto", [mosq, "-c", str(conf)], d, port, admin_password,
                              tls_port, host)
    else:
        if tls:
            raise BrokerError("TLS is only set up for mosquitto; install mosquitto")
        spec = {"port": port, "host": host, "fleet": fleet, "users": {}, "acl": {}}
        if users:
            salt = os.urandom(8).hex()
            spec["salt"] = salt
            spec["users"] = {u: _hash_password(pw, salt) for u, pw in sorted(users.items())}
            spec["acl"] = acl_rules(fleet, sorted(node_credentials or {}))
        (d / "amqtt.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
        os.chmod(d / "amqtt.json", 0o600)  # password hashes: for this user only
        argv = [sys.executable, "-m", "roost.gateway.broker", "--serve-embedded", str(d)]
        handle = BrokerHandle("amqtt", argv, d, port, admin_password, None, host)
    (d / "broker.json").write_text(json.dumps(handle.describe() | {"argv": handle.argv},
                                              indent=1, sort_keys=True))
    return handle.start() if start else handle


# ---------------------------------------------------------------- the embedded broker


def _embedded_plugins() -> tuple[type, type]:
    from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

    class RoostAuth(BaseAuthPlugin):
        """Users from amqtt.json (salted sha256); anonymous only when there are no users."""

        async def authenticate(self, *, session: Any) -> bool | None:
            spec = _spec()
            if not spec["users"]:
                return True
            user = getattr(session, "username", None)
            pw = getattr(session, "password", None)
            if not user or user not in spec["users"] or pw is None:
                return False
            if isinstance(pw, bytes):
                pw = pw.decode(errors="replace")
            if _hash_password(pw, spec["salt"]) != spec["users"][user]:
                return False
            rule = (spec["acl"] or {}).get(user)
            if user != ADMIN_USER and getattr(session, "client_id", None) != user:
                return False  # a node connects as itself: never takes another's session
            will = getattr(session, "will_topic", None) if getattr(session, "will_flag",
                                                                  False) else None
            if will and rule is not None and not any(
                    topic_matches(f, will) for f in rule["publish"]):
                return False  # a Last Will is a publish too (mosquitto checks it as one)
            return True

    class RoostAcl(BaseTopicPlugin):
        """Publish and subscribe filters per user (the same rules as mosquitto's ACL)."""

        def topic_filtering_enabled(self) -> bool:
            return True

        async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                                  action: Any = None) -> bool | None:
            spec = _spec()
            if not spec["acl"]:
                return True
            user = getattr(session, "username", None)
            rule = spec["acl"].get(user or "")
            if rule is None or not topic:
                return False
            name = getattr(action, "value", str(action)).lower()
            if "publish" in name:
                filters = rule["publish"]
            else:
                filters = rule["subscribe"]
            for f in filters:
                if topic_matches(f, topic) or (name.endswith("subscribe")
                                                and _covers(f, topic)):
                    return True
            return False

    return RoostAuth, RoostAcl


def _covers(allowed: str, requested: str) -> bool:
    """A subscription filter lies inside an allowed filter ('+'/'#' in the request count as
    the same wildcard in the rule)."""
    a = allowed.split("/")
    r = requested.split("/")
    for i, part in enumerate(a):
        if part == "#":
            return True
        if i >= len(r):
            return False
        if r[i] == "#":
            return False
        if part != "+" and part != r[i]:
            return False
    return len(a) == len(r)


_SPEC: dict[str, Any] = {}


def _spec() -> dict[str, Any]:
    if not _SPEC:
        _SPEC.update(json.loads(Path(os.environ["ROOST_AMQTT_SPEC"]).read_text()))
    return _SPEC


def __getattr__(name: str) -> Any:
    # amqtt loads plugins by dotted path: build the classes (which need amqtt) on first use
    if name in ("RoostAuth", "RoostAcl"):
        auth, acl = _embedded_plugins()
        globals()["RoostAuth"], globals()["RoostAcl"] = auth, acl
        return globals()[name]
    raise AttributeError(name)


def serve_embedded(directory: str) -> int:
    """Run the amqtt broker described by ``directory/amqtt.json`` until SIGTERM."""
    import asyncio
    import logging

    from amqtt.broker import Broker

    os.environ["ROOST_AMQTT_SPEC"] = str(Path(directory).resolve() / "amqtt.json")
    spec = _spec()
    logging.basicConfig(level=logging.WARNING)
    config = {
        "listeners": {"default": {"type": "tcp",
                                  "bind": "%s:%d" % (spec.get("host", "127.0.0.1"), spec["port"])}},
        "plugins": {"roost.gateway.broker.RoostAuth": {}, "roost.gateway.broker.RoostAcl": {}},
    }

    async def main() -> None:
        broker = Broker(config)
        await broker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await broker.shutdown()

    asyncio.run(main())
    return 0


# ---------------------------------------------------------------- command line


def _plan_users(args: argparse.Namespace) -> tuple[dict[str, str], str] | None:
    """--plan DIR: (node passwords, admin password), and the plan's fleet into args.fleet."""
    from roost.emulator.fleet import load_state
    from roost.gateway.plan import is_plan, mqtt_users

    state = load_state(args.plan)  # FleetError (a ValueError) when there is none
    if not is_plan(state):
        raise ValueError("%s holds an emulated fleet, not a plan (roost plan)" % args.plan)
    users = mqtt_users(state)
    if users is None:
        raise ValueError("the plan in %s has no MQTT users (made before plans had them): "
                         "make it again, or give --credentials FILE" % args.plan)
    args.fleet = state["fleet"]
    if args.port is None:  # where the plan told every node the broker listens
        from roost.node.mqtt_codec import parse_url

        args.port = parse_url(state["broker"]["url"].replace("mqtts://", "mqtt://", 1))[1]
    return users["nodes"], users["admin"]


def _broker_cmd(args: argparse.Namespace) -> int:
    d = Path(args.dir or ".roost/broker")
    creds = None
    admin = None
    if args.plan and args.credentials:
        raise ValueError("--plan gives the users: leave out --credentials")
    if args.plan:
        creds, admin = _plan_users(args)
        if args.dir is None:  # its passwords and persistence beside the plan, not in the cwd
            d = Path(args.plan) / "broker"
    if args.port is None:
        args.port = 1883
    if not 0 <= args.port <= 65535:
        raise ValueError("--port must be 0 to 65535 (0: any free one)")
    if args.credentials:
        try:
            creds = json.loads(Path(args.credentials).read_text())
        except (OSError, ValueError) as e:
            print("roost broker: cannot read credentials file %s: %s" % (args.credentials, e),
                  file=sys.stderr)
            return 2
        if not isinstance(creds, dict) or not all(
                is_valid_id(k) and isinstance(v, str) and v for k, v in creds.items()):
            raise ValueError("credentials file %s must hold one JSON object of node id -> "
                             "password, like {\"n01\": \"...\"}" % args.credentials)

    other = _running_from(d)
    if other:  # it would rewrite that broker's config and pid file, then fail to listen
        print("roost broker: a broker already runs from %s (pid %d): stop it first, or give "
              "another --dir" % (d, other), file=sys.stderr)
        return 1
    # kill PID or a closed terminal: as Ctrl-C; set before the broker starts, which must
    # never outlive this command
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    signal.signal(signal.SIGHUP, raise_keyboard_interrupt)
    try:
        h = start_broker(d, args.port, node_credentials=creds, tls=args.tls,
                         embedded=args.embedded, fleet=args.fleet, host=args.host,
                         admin_password=admin, start=False).start(tied=True)
    except BrokerError as e:
        print("roost broker: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # stopped while starting: the broker, tied to us, stops too
        return 0
    pid = h.pid
    adverts: list[Any] = []
    try:  # from here a SIGTERM (as Ctrl-C) at any line stops the broker and exits 0
        info = h.describe()
        if args.host not in ("127.0.0.1", "localhost", "::1"):  # on the LAN: zeroconf
            adverts = _advertise(h, args)
            if adverts:
                from roost.gateway.discovery import broker_instance

                info["advertised"] = broker_instance(args.fleet)
        if creds is not None:  # the gateway, roost kv and ota publish log in as admin
            pw_file = d.resolve() / "admin.password"
            pw_file.write_text((h.admin_password or "") + "\n")
            os.chmod(pw_file, 0o600)
            info["admin_password_file"] = str(pw_file)
        if args.json:
            print(json.dumps(info, sort_keys=True), flush=True)
        else:
            where = h.url if args.host != "0.0.0.0" else (
                "every interface, port %d (mqtt://THIS-MACHINE'S-IP:%d for boards and Pis, %s "
                "here)" % (h.port, h.port, h.url))
            print("%s broker listening on %s (pid %s, config in %s); Ctrl-C stops it"
                  % (h.kind, where, h.pid, d), flush=True)
            if creds is not None:
                print("users: one per node in %s, and admin (the gateway, roost kv, roost ota "
                      "publish) with the password in %s" % (args.plan or args.credentials,
                                                            info["admin_password_file"]),
                      flush=True)
            elif args.host != "127.0.0.1":
                print("anyone on the network may connect: protocol messages are still checked "
                      "against the fleet key, but readings and statuses are not (--plan DIR, or "
                      "--credentials FILE, gives each node its own password and topics)",
                      flush=True)
            if adverts:
                print("advertised on the LAN by zeroconf as %s: nodes whose "
                      "config says \"discovery\": true find it%s" % (info["advertised"], (
                          " (the record signed with the fleet key)" if _advert_key(args) else
                          " (unsigned: no fleet key in --plan or ROOST_FLEET_KEY, so nodes "
                          "with an MQTT password do not take it)")), flush=True)
        while h.running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        for a in adverts:  # goodbye records: browsers forget this broker at once
            a.close()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second signal must not
            signal.signal(sig, signal.SIG_IGN)  # cut the broker's stop short
        h.stop()  # the broker goes with this command, however it was stopped
    print("roost broker: the %s broker (pid %s) stopped by itself%s; its log is %s"
          % (h.kind, pid, _last_words(h.log), h.log), file=sys.stderr, flush=True)
    return 1


def _running_from(d: Path) -> int | None:
    """The pid of a broker started from directory d that still runs, or None."""
    from roost.emulator.fleet import pid_alive

    try:
        pid = int((d / "broker.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid, "mosquitto") or pid_alive(pid, "--serve-embedded") else None


def _advert_key(args: argparse.Namespace) -> str | None:
    """The fleet key that signs the broker's zeroconf records: the plan's, or
    ROOST_FLEET_KEY's (a node that logs in with a password takes no unsigned record)."""
    if args.plan:
        from roost.gateway.plan import KEY

        try:
            return (Path(args.plan) / KEY).read_text().strip() or None
        except OSError:
            return None
    return os.environ.get("ROOST_FLEET_KEY") or None


def _advertise(h: BrokerHandle, args: argparse.Namespace) -> list[Any]:
    """The broker's zeroconf records (_mqtt._tcp, with its fleet, signed when the fleet key
    is here), or [] without zeroconf."""
    from roost.gateway import discovery

    where = None if args.host == "0.0.0.0" else [args.host]
    key = _advert_key(args)
    out: list[Any] = []
    try:
        out.append(discovery.advertise_broker(h.port, fleet=args.fleet, interfaces=where,
                                              key=key))
        if h.tls_port:
            out.append(discovery.advertise_broker(
                h.tls_port, fleet=args.fleet, tls=True, interfaces=where,
                instance=discovery.broker_instance(args.fleet, True), key=key))
    except (ImportError, OSError, ValueError) as e:  # no zeroconf, no multicast interface
        print("roost broker: not advertised by zeroconf (%s)" % e, file=sys.stderr)
    return out


def _last_words(log: Any) -> str:
    """': <the log's last error line>' (why a broker stopped), or ""."""
    try:
        lines = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines()
                 if ln.strip()]
    except (OSError, TypeError):
        return ""
    errs = [ln for ln in lines[-20:] if "rror" in ln]
    return ": " + (errs[-1] if errs else lines[-1])[:200] if lines else ""


def add_broker_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost broker [--port P] [--dir D] [--embedded] [--tls] [--credentials FILE]``."""
    p = sub.add_parser("broker", help="run an MQTT broker for the fleet (mosquitto or amqtt)")
    p.add_argument("--port", type=int, default=None,
                   help="listen on HOST:PORT (default 1883, or the port of --plan's broker; "
                   "0: any port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: "
                   "every interface, for a gateway that boards reach over Wi-Fi)")
    p.add_argument("--dir", default=None, help="config, passwords and persistence (default "
                   ".roost/broker; with --plan, DIR/broker)")
    p.add_argument("--embedded", action="store_true", help="use amqtt even if mosquitto exists")
    p.add_argument("--tls", action="store_true", help="add a TLS listener (mosquitto)")
    p.add_argument("--fleet", default="default", help="fleet name in topics roost/<fleet>/...")
    p.add_argument("--credentials", help="JSON file {node_id: password}: per-node users + ACLs")
    p.add_argument("--plan", metavar="DIR", help="the users of a plan (roost plan): one per "
                   "node, each publishing only under its own topics, and admin; its fleet name")
    p.add_argument("--json", action="store_true", help="print the broker's address as JSON")
    p.set_defaults(handler=_broker_cmd)
    return p


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-embedded":
        sys.exit(serve_embedded(sys.argv[2]))
    ap = argparse.ArgumentParser(prog="roost")
    sp = ap.add_subparsers()
    add_broker_parser(sp)
    a = ap.parse_args(["broker"] + sys.argv[1:])
    sys.exit(a.handler(a))
