"""``roost ota publish``: send a signed node-code update to boards over MQTT. CPython-only.

    roost ota publish --dir FLEET_DIR --target n04 --serial 2 [--image DIR] [--version V]
    roost ota publish --broker mqtt://HOST:1883 --fleet lab --target esp32 --serial 2 ...

The bundle is the node code of an image (``roost build``'s ``slots/a``), signed with the
fleet key (``ROOST_FLEET_KEY``, ``--key-file`` or the fleet directory's key; never on the
command line). It goes to ``roost/<fleet>/ota/<target>`` (a node id or a board kind) as a
QoS 1 stream of frames (manifest, file pieces, end: ``roost/node/ota_mqtt.py``), or with
``--single`` as one message (``--retain`` keeps it for boards that come online later). The
board verifies the tag and every hash, stages the files beside the running copy, switches
slots, resets, and confirms the update once it has rejoined the fleet; its result appears
on ``roost/<fleet>/node/<id>/ota`` and on its console.
"""

import argparse
import json
import os
import threading
import time
from pathlib import Path

from roost.firmware import build, ota
from roost.hardware.boards import PROFILE_NAMES, a_board
from roost.node.mqtt import WIFI
from roost.node.mqtt_codec import parse_url
from roost.node.ota_mqtt import frame_begin, frame_bundle, frame_end, frame_file, ota_topic

# Every frame must pass the smallest packet a board's MQTT client takes (the Wi-Fi preset
# of boards flashed from a plan), with room for the topic and the packet's header: a board
# skips a larger one (acknowledged and counted), so that update could never complete.
FRAME_MAX = WIFI["max_packet"] - 256
CHUNK = 4096  # bytes of file per frame
SINGLE_MAX = FRAME_MAX  # a whole bundle in one message (--single)


def image_files(image: Path) -> dict[str, bytes]:
    """The node code of an image: {path inside the slot: bytes}."""
    build.check_image(image)
    slot = image / "slots" / "a"
    files = {}
    for p in sorted(slot.rglob("*")):
        if p.is_file():
            files[p.relative_to(slot).as_posix()] = p.read_bytes()
    if not files:
        raise ValueError("image %s has no node code in slots/a" % image)
    return files


def make_bundle(files: dict[str, bytes], key: str, serial: int, version: str,
                board: str = "esp32") -> tuple[bytes, bytes]:
    """(manifest, tag)."""
    if not 1 <= serial < 1 << 32:  # the frames carry it in 4 bytes: a board ignored the
        # rest of a date-like 202612061530 without a word
        raise ValueError("--serial must be 1 to 4294967295 (a board starts at 0)")
    manifest = ota.make_manifest(files, serial, version, board)
    return manifest, ota.sign(key, manifest)


def frames(manifest: bytes, tag: bytes, files: dict[str, bytes], single: bool = False,
           chunk: int = CHUNK) -> list[bytes]:
    """The MQTT payloads, in order."""
    if single:
        whole = frame_bundle(manifest, tag, files)
        if len(whole) > SINGLE_MAX:
            raise ValueError("a %d-byte update does not fit one message (boards take at most "
                             "%d bytes per MQTT packet): leave out --single" % (len(whole),
                                                                                SINGLE_MAX))
        return [whole]
    m, why = ota.parse_manifest(manifest)
    if why:
        raise ValueError("bad manifest: " + why)
    out = [frame_begin(manifest, tag)]
    for i, row in enumerate(m["files"]):
        data = files[row[0]]
        for off in range(0, len(data), chunk):
            out.append(frame_file(m["serial"], i, off, data[off:off + chunk]))
    out.append(frame_end(m["serial"]))
    if len(out[0]) > FRAME_MAX:
        raise ValueError("the update's manifest takes %d bytes, over the %d a board's MQTT "
                         "client takes in one packet: %d files are too many for one update"
                         % (len(out[0]), FRAME_MAX, len(m["files"])))
    return out


def publish(broker: str, topic: str, payloads: list[bytes], retain: bool = False,
            timeout: float = 60.0) -> None:
    """QoS 1, in order, every PUBACK awaited (paho)."""
    import paho.mqtt.client as paho

    host, port, user, password = parse_url(broker)[:4]
    c = paho.Client(paho.CallbackAPIVersion.VERSION2,
                    client_id="roost-ota-%d" % os.getpid(), clean_session=True)
    c.max_inflight_messages_set(1)  # one frame at a time: order kept even across a retry
    if user:
        c.username_pw_set(user, password)
    connected = threading.Event()
    c.on_connect = lambda cl, ud, fl, rc, props=None: connected.set()
    shown = "mqtt://%s:%d" % (host, port)  # never the password in a message
    try:
        c.connect(host, port, keepalive=30)
    except OSError as e:
        raise ValueError("cannot reach the broker %s (%s)" % (shown, e)) from None
    c.loop_start()
    try:
        if not connected.wait(timeout):
            raise ValueError("the broker %s did not accept the connection" % shown)
        deadline = time.monotonic() + timeout
        for p in payloads:
            info = c.publish(topic, p, qos=1, retain=retain)
            while not info.is_published():
                if time.monotonic() > deadline:
                    raise ValueError("the broker did not acknowledge the update in %d s"
                                     % timeout)
                info.wait_for_publish(0.5)
    finally:
        c.disconnect()
        c.loop_stop()


def _key(args: argparse.Namespace) -> str:
    if os.environ.get("ROOST_FLEET_KEY"):
        return os.environ["ROOST_FLEET_KEY"]
    path = args.key_file or (str(Path(args.dir) / "fleet.key") if args.dir else None)
    if not path:
        raise ValueError("no fleet key: set ROOST_FLEET_KEY, --key-file FILE or --dir FLEET_DIR")
    try:
        return Path(path).read_text().strip()
    except OSError as e:
        raise ValueError("cannot read the fleet key %s (%s)" % (path, e.strerror)) from None


def _cmd_publish(args: argparse.Namespace) -> int:
    from roost.common.ids import check_id
    from roost.hardware.boards import get_profile

    if args.retain and not args.single:
        raise ValueError("--retain needs --single: a stream's frames cannot be retained (the "
                         "broker would keep its last frame only, useless to a board)")
    check_id(args.target, "--target")
    if args.fleet is not None:
        check_id(args.fleet, "--fleet")
    if args.board is not None:
        get_profile(args.board)  # an unknown board: one sentence naming the known ones
    key = _key(args)
    broker, fleet = args.broker, args.fleet
    planned = {}
    if args.dir:
        from roost.emulator.fleet import load_state

        state = load_state(args.dir)
        fleet = fleet or state["fleet"]
        from roost.gateway.plan import admin_url, is_plan

        broker = broker or (admin_url(state) if state.get("broker") else None)
        if is_plan(state):
            planned = state["nodes"].get(args.target) or {}
            if not planned and args.target not in PROFILE_NAMES:
                raise ValueError("%s is neither a node of the plan in %s (%s) nor a board kind "
                                 "(%s): no board would take the update"
                                 % (args.target, args.dir, ", ".join(state["ids"]),
                                    ", ".join(PROFILE_NAMES)))
        elif args.target not in PROFILE_NAMES:  # an emulated fleet: only its flashed boards
            # take updates (its node processes run the code of this checkout)
            boards = sorted(n for n, i in state["nodes"].items() if i.get("interp") == "board")
            if args.target not in boards:
                raise ValueError("%s is neither a board that joined the fleet in %s (%s) nor a "
                                 "board kind (%s): no board would take the update (emulated "
                                 "nodes run this checkout's code)"
                                 % (args.target, args.dir, ", ".join(boards) or "none yet",
                                    ", ".join(PROFILE_NAMES)))
            planned = state["nodes"][args.target]  # its kind, recorded when it was flashed
    if not broker or not fleet:
        raise ValueError("give --broker and --fleet (or --dir of a fleet)")
    built_for = build.load_manifest(Path(args.image)).get("board") if args.image else None
    if args.board is None:  # the plan's board for that node, the board kind targeted, or
        # the image's
        args.board = planned.get("board") or (args.target if args.target in PROFILE_NAMES
                                              else built_for or "esp32")
    if args.image:
        image = Path(args.image)
        if built_for and built_for != args.board:
            raise ValueError("the image in %s was built for %s board, not %s one: build "
                             "it for %s, or leave out --image" % (image, a_board(built_for),
                                                                 a_board(args.board), args.board))
        files = image_files(image)
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="roost-ota-") as tmp:
            build.build(args.board, Path(tmp) / "image", args.serial, args.version or "")
            files = image_files(Path(tmp) / "image")
    version = args.version or "serial-%d" % args.serial
    manifest, tag = make_bundle(files, key, args.serial, version, args.board)
    payloads = frames(manifest, tag, files, args.single)
    t = ota_topic(fleet, args.target)
    publish(broker, t, payloads, args.retain)
    out = {"topic": t, "serial": args.serial, "version": version, "board": args.board,
           "files": len(files),
           "bytes": sum(len(v) for v in files.values()), "messages": len(payloads)}
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        who = (("each %s board reports on roost/%s/node/<its id>/ota" % (args.target, fleet))
               if args.target in PROFILE_NAMES else
               "the board reports on roost/%s/node/%s/ota" % (fleet, args.target))
        print("roost ota: update %s (serial %d, %d files, %d bytes) published on %s in %d "
              "message(s); %s" % (version, args.serial, out["files"], out["bytes"], t,
                                  out["messages"], who))
    return 0


def add_ota_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ota", help="signed over-the-air updates of boards over MQTT")
    osub = p.add_subparsers(dest="ota_command", metavar="ACTION")
    osub.required = True
    s = osub.add_parser("publish", help="publish a signed node-code update",
                        description=__doc__.split("\n\n")[2].replace("``", ""))
    s.add_argument("--target", required=True, help="a node id (n04) or a board kind (esp32)")
    s.add_argument("--serial", type=int, required=True,
                   help="update serial: must be newer than the board's (old ones are refused)")
    s.add_argument("--version", default="", help="a version label shown by the board")
    s.add_argument("--image", default=None, help="an image from 'roost build' (default: build)")
    s.add_argument("--board", default=None, help="board kind the bundle is for (default: "
                   "the plan's for the target node, the target if it is a board kind, else "
                   "esp32)")
    s.add_argument("--dir", default=None,
                   help="a fleet's directory, emulated or a plan (broker, key)")
    s.add_argument("--broker", default=None, help="mqtt://host:port")
    s.add_argument("--fleet", default=None, help="fleet name")
    s.add_argument("--key-file", default=None, help="file holding the fleet key")
    s.add_argument("--single", action="store_true", help="one message instead of a stream")
    s.add_argument("--retain", action="store_true", help="retain it (with --single)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=_cmd_publish)
    return p
