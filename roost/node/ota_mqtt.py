"""Over-the-air updates over MQTT: the board side. MicroPython-safe.

Subscribes (QoS 1) through the node's own MQTT client to ``roost/<fleet>/ota/<node id>``
and ``roost/<fleet>/ota/<board kind>`` and drives ``roost.firmware.ota.OtaStager`` with the
frames that arrive there. Frames (binary; ``S`` is the bundle's serial, big-endian)::

    b"ROTA1M" + u16 len + manifest + tag(32)     begin: signed manifest (OtaStager.begin)
    b"ROTA1F" + u32 S + u16 index + u32 offset + bytes    the next piece of file <index>
    b"ROTA1E" + u32 S                            end: check every hash, switch slots
    b"ROTA1B" + u16 len + manifest + tag(32) + every file's bytes in manifest order
                                                 a whole small bundle in one message
                                                 (may be retained: a board that comes
                                                 online later still gets it)

A stream (M, F..., E) is published at QoS 1 on one topic, so the broker keeps its order and,
with the node's persistent session, queues it while the node is briefly away. Every piece
stays under the client's ``max_packet`` (8 KB in the Wi-Fi preset) and an ESP32's heap. The
tag is HMAC-SHA256 with the fleet key over the manifest, and the manifest holds every file's
sha256: a changed byte anywhere is refused (``bad_signature`` or ``hash_mismatch``), counted
in ``stats["rx_rejected_<reason>"]``, logged in one line, and the running code is untouched.
After a switch ``reset_pending`` is set; the board's hooks reset it from the control loop,
the new slot boots on trial and ``ota.confirm`` keeps it once the node has rejoined. Results
go to ``roost/<fleet>/node/<id>/ota`` (QoS 1): ``{"serial", "result", "reason"}``.
"""

import json

from roost.firmware import ota

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


MAGIC = b"ROTA1"
_TAG = const(32)
_STALE_QUIET = "stale"


def _u(b, i, n):
    v = 0
    for k in range(n):
        v = (v << 8) | b[i + k]
    return v


def _be(v, n):
    out = bytearray(n)
    for k in range(n - 1, -1, -1):
        out[k] = v & 0xFF
        v >>= 8
    return bytes(out)


# ---- frames (the publisher's side uses the same functions: one definition of the wire)


def frame_begin(manifest, tag, kind=b"M"):
    return MAGIC + kind + _be(len(manifest), 2) + manifest + tag


def frame_file(serial, index, offset, data):
    return MAGIC + b"F" + _be(serial, 4) + _be(index, 2) + _be(offset, 4) + data


def frame_end(serial):
    return MAGIC + b"E" + _be(serial, 4)


def frame_bundle(manifest, tag, files):
    """One message holding the whole bundle (files: {path: bytes})."""
    m, _ = ota.parse_manifest(manifest)
    parts = [frame_begin(manifest, tag, b"B")]
    for row in m["files"]:
        parts.append(files[row[0]])
    return b"".join(parts)


def ota_topic(fleet, target):
    return "roost/" + fleet + "/ota/" + target


class OtaMqtt:
    """See the module docstring. ``client`` has subscribe/publish/on_message (mqtt.MQTTClient)."""

    def __init__(self, client, fleet, node_id, board, key, root="", log=print):
        self.client = client
        self.fleet = fleet
        self.node_id = node_id
        self.log = log
        self.stager = ota.OtaStager(root, key, board)
        self.stats = self.stager.stats  # one place for every counter
        self.topics = (ota_topic(fleet, node_id), ota_topic(fleet, board))
        self.serial = None  # the serial of the stream being received
        self.version = ""
        self.reset_pending = False
        self._lost = 0  # a stream whose start this boot missed (said once)
        self._started = []  # serials whose start frame this boot saw (the last few)
        self._prev = client.on_message
        client.on_message = self._on_message
        for t in self.topics:
            client.subscribe(t, 1)

    def _count(self, name):
        self.stats[name] = self.stats.get(name, 0) + 1

    def _report(self, result, reason="", m=None):
        """On roost/<fleet>/node/<id>/ota; m: another update's manifest than this one's."""
        body = {"serial": m["serial"] if m else self.serial,
                "version": m["version"] if m else self.version, "result": result,
                "reason": reason}
        try:
            self.client.publish("roost/" + self.fleet + "/node/" + self.node_id + "/ota",
                                json.dumps(body), 1)
        except (ValueError, OSError):
            pass

    def report_state(self, result):
        """"confirmed" or "rolled_back": the end of the update the slot state names, on
        the result topic (only the switch and refusals went there; the rest to the
        console). Queued by the MQTT client until it connects."""
        st = ota.bootsel.read_state(self.stager.root)
        self._report(result, "", {"serial": st[3],
                                  "version": "" if st[4] == "rollback" else st[4]})

    def _refused(self, why, quiet=False):
        if not quiet:
            self.log("roost: update %s refused (%s); still running the current code"
                     % (self.version or "?", why))
            self._report("refused", why)
        self.serial = None
        return why

    def _on_message(self, t, payload, retained):
        if t not in self.topics:
            if self._prev is not None:
                self._prev(t, payload, retained)
            return
        try:
            self.handle(bytes(payload), retained)
        except Exception as e:  # noqa: BLE001 - remote bytes must never stop the node
            self._count("rx_rejected_malformed")
            self.stager.abort()
            self.log("roost: update frame dropped (%s)" % type(e).__name__)

    def handle(self, b, retained=False):
        """One frame. Returns None, "switched" or the refusal reason. Never raises on bad
        bytes (a malformed frame is counted)."""
        self._count("ota_frames")
        if self.reset_pending:  # switched already: the board resets before anything else
            if len(b) > 8 and b[:5] == MAGIC and b[5:6] in (b"M", b"B"):
                # another update's start: said, not dropped without a word (its frames
                # were taken from the broker, so it will not come again by itself)
                m, _ = ota.parse_manifest(b[8:8 + _u(b, 6, 2)])
                if m and m["serial"] != self.serial:  # (not its own start delivered again)
                    self.log("roost: update %s refused (switching to %s: publish it again "
                             "once that one is confirmed)" % (m["version"], self.version))
                    self._report("refused", "switching", m)
            return None
        if len(b) < 7 or b[:5] != MAGIC:
            self._count("rx_rejected_malformed")
            return self._refused("malformed")
        kind = b[5:6]
        if kind in (b"M", b"B"):
            n = _u(b, 6, 2)
            if len(b) < 8 + n + _TAG:
                self._count("rx_rejected_malformed")
                return self._refused("malformed")
            manifest = b[8:8 + n]
            tag = b[8 + n:8 + n + _TAG]
            m, _ = ota.parse_manifest(manifest)
            self.serial = m["serial"] if m else None
            if m:  # its start came, taken or refused: its pieces are not "interrupted"
                self._started = self._started[-3:] + [m["serial"]]
            self.version = m["version"] if m else ""
            why = self.stager.begin(manifest, tag)
            if why:
                # an old retained bundle seen again after its own update: not news
                return self._refused(why, quiet=retained and why == _STALE_QUIET)
            self.log("roost: update %s (serial %d) arriving: %d files"
                     % (self.version, self.serial, len(m["files"])))
            if kind == b"M":
                return None
            return self._whole(m, b, 8 + n + _TAG)
        if self.serial is None or len(b) < 10 or _u(b, 6, 4) != self.serial:
            self._count("ota_ignored")  # a piece of a stream we are not receiving
            lost = _u(b, 6, 4) if len(b) >= 10 else 0
            if (not self._lost and lost not in self._started
                    and lost > ota.bootsel.read_state(self.stager.root)[3]):
                # its start went by (the board reset mid-stream): say so, once a boot (the
                # frames carry no tag), not a board left "arriving" with its pieces ignored
                self._lost = lost
                self.log("roost: update serial %d came in part only (the board reset while "
                         "it arrived): publish it again" % lost)
                self._report("refused", "interrupted", {"serial": lost, "version": ""})
            return None
        if kind == b"F":
            if len(b) < 16:
                self._count("rx_rejected_malformed")
                return self._refused("malformed")
            idx = _u(b, 10, 2)
            off = _u(b, 12, 4)
            files = self.stager._manifest["files"] if self.stager.busy else ()
            if idx >= len(files):
                return self._refused(self.stager._refuse("unknown_file"))
            why = self.stager.write(files[idx][0], off, b[16:])
            return self._refused(why) if why else None
        if kind == b"E":
            return self._finish()
        self._count("rx_rejected_malformed")
        return self._refused("malformed")

    def _whole(self, m, b, pos):
        for path, size, _digest in m["files"]:
            if pos + size > len(b):
                return self._refused(self.stager._refuse("incomplete"))
            off = 0
            while off < size:
                n = min(4096, size - off)
                why = self.stager.write(path, off, b[pos + off:pos + off + n])
                if why:
                    return self._refused(why)
                off += n
            pos += size
        if pos != len(b):
            return self._refused(self.stager._refuse("malformed"))
        return self._finish()

    def _finish(self):
        why = self.stager.finish()
        if why:
            return self._refused(why)
        self.log("roost: update %s (serial %d) verified and switched; resetting into it"
                 % (self.version, self.serial))
        self._report("switched")
        self.reset_pending = True
        return "switched"
