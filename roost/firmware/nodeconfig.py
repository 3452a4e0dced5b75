"""A board's ``config.json`` and ``secrets.json``: defaults with reasons, validated by hand.

MicroPython-safe. ``load(dir)`` never raises: it returns ``(config, None)`` or
``(None, sentence)`` where the sentence is the ONE line the board prints on its serial
console before holding in safe mode (a bad config must not become a crash loop).

config.json (an object; only ``node_id`` and ``broker`` are required)::

    {"node_id": "n03", "fleet": "classroom", "broker": "mqtt://192.168.4.1:1883",
     "wifi_ssid": "roost-lab", "board": "esp32"}

secrets.json (kept apart so config.json can be shown and logged)::

    {"wifi_password": "...", "fleet_key": "...", "mqtt_password": "..."}  (the last from a
    plan: the board's own MQTT user)
"""

import json

from roost.common.ids import is_valid_id

CONFIG_FILE = "config.json"
SECRETS_FILE = "secrets.json"
_MAX_FILE = 4096  # bytes: a config larger than this is a mistake, not a config


class FirmwareConfig:
    node_id = ""  # required: this board's node id ("n03")
    fleet = "roost"  # fleet name: MQTT topics live under roost/<fleet>/
    board = "esp32"  # board profile name (heap budget, pins, default sensors)
    broker = ""  # required: mqtt://host[:port] or mqtts://host[:port]
    wifi_ssid = ""  # Wi-Fi network; empty = no Wi-Fi (wired Pi, virtual board)
    safe_pin = 0  # GPIO held low at reset skips main.py (GPIO0 = the BOOT button)
    wifi_boot_wait_ms = 4000  # boot.py waits at most this long (mpremote allows 10 s)
    wifi_retry_ms = 500  # first back-off between Wi-Fi attempts in main.py
    wifi_retry_max_ms = 16000  # back-off doubles up to this
    wifi_attempts = 8  # attempts before starting the node offline (it retries later)
    watchdog_ms = 30000  # hardware watchdog: a hung node resets after 30 s
    ota_join_timeout_ms = 120000  # new code must report "joined" within 2 min, else roll back
    udp_port = 4210  # node-to-node datagrams (gossip, Paxos)
    runtime = None  # optional object handed to the node runtime as it is

    def __init__(self, **overrides):
        for name in sorted(overrides):
            setattr(self, name, overrides[name])


_INTS = (
    ("safe_pin", 0, 48),
    ("wifi_boot_wait_ms", 0, 9000),
    ("wifi_retry_ms", 10, 600000),
    ("wifi_retry_max_ms", 10, 3600000),
    ("wifi_attempts", 1, 1000),
    ("watchdog_ms", 1000, 600000),
    ("ota_join_timeout_ms", 1000, 3600000),
    ("udp_port", 1, 65535),
)
_STRS = ("node_id", "fleet", "board", "broker", "wifi_ssid")
_KNOWN = _STRS + tuple(t[0] for t in _INTS) + ("runtime",)
_SECRETS = ("wifi_password", "fleet_key", "mqtt_password")


def check_broker(url):
    """None when url is mqtt://host[:port] or mqtts://host[:port], else the reason."""
    if not isinstance(url, str) or not url:
        return "broker must be a URL like mqtt://192.168.4.1:1883"
    for scheme in ("mqtt://", "mqtts://"):
        if url.startswith(scheme):
            rest = url[len(scheme):]
            break
    else:
        return "broker %r must start with mqtt:// or mqtts://" % url
    host = rest
    if ":" in rest:
        host, port = rest.rsplit(":", 1)
        if not port.isdigit() or not 0 < int(port) < 65536:
            return "broker %r has a bad port" % url
    if not host or "/" in host or " " in host or len(host) > 253:
        return "broker %r has a bad host" % url
    return None


def validate(obj):
    """config dict -> (FirmwareConfig, None) or (None, reason). Never raises."""
    if not isinstance(obj, dict):
        return None, "config.json must hold a JSON object"
    for name in sorted(obj):
        if name not in _KNOWN:
            return None, "config.json has an unknown option %r" % (name,)
    for name in _STRS:
        if name in obj and not isinstance(obj[name], str):
            return None, "config.json option %s must be a string" % name
    for name, lo, hi in _INTS:
        if name in obj:
            v = obj[name]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                return None, "config.json option %s must be a whole number from %d to %d" % (
                    name, lo, hi)
    if "node_id" not in obj:
        return None, "config.json has no node_id"
    if not is_valid_id(obj["node_id"]):
        return None, "config.json node_id %r must be 1 to 32 letters, digits, '-', '_' or '.'" % (
            obj["node_id"],)
    if "fleet" in obj and not is_valid_id(obj["fleet"]):
        return None, "config.json fleet %r must be 1 to 32 letters, digits, '-', '_' or '.'" % (
            obj["fleet"],)
    if "broker" not in obj:
        return None, "config.json has no broker (mqtt://host:port)"
    why = check_broker(obj["broker"])
    if why:
        return None, "config.json " + why
    if len(obj.get("wifi_ssid", "")) > 32:
        return None, "config.json wifi_ssid is longer than 32 bytes"
    if obj.get("wifi_retry_max_ms", 16000) < obj.get("wifi_retry_ms", 500):
        return None, "config.json wifi_retry_max_ms must not be below wifi_retry_ms"
    if "runtime" in obj and not isinstance(obj["runtime"], (dict, type(None))):
        return None, "config.json option runtime must be an object"
    return FirmwareConfig(**obj), None


def validate_secrets(obj, cfg):
    """secrets dict -> (dict, None) or (None, reason). Never raises; never quotes a secret."""
    if not isinstance(obj, dict):
        return None, "secrets.json must hold a JSON object"
    for name in sorted(obj):
        if name not in _SECRETS:
            return None, "secrets.json has an unknown entry %r" % (name,)
        if not isinstance(obj[name], str):
            return None, "secrets.json entry %s must be a string" % name
    if not obj.get("fleet_key"):
        return None, "secrets.json has no fleet_key"
    if cfg.wifi_ssid and not 8 <= len(obj.get("wifi_password", "")) <= 63:
        return None, "secrets.json wifi_password must be 8 to 63 characters for a WPA2 network"
    return obj, None


def _read_json(path, what):
    try:
        with open(path) as f:
            text = f.read(_MAX_FILE + 1)
    except OSError:
        return None, "there is no %s on the board (write one with 'roost flash')" % what
    if len(text) > _MAX_FILE:
        return None, "%s is larger than %d bytes" % (what, _MAX_FILE)
    try:
        return json.loads(text), None
    except ValueError:
        return None, "%s is not valid JSON" % what


def load(root=""):
    """(FirmwareConfig, secrets dict, None) or (None, None, sentence). Never raises."""
    prefix = root + "/" if root and not root.endswith("/") else root
    obj, why = _read_json(prefix + CONFIG_FILE, CONFIG_FILE)
    if why:
        return None, None, why
    cfg, why = validate(obj)
    if why:
        return None, None, why
    sec, why = _read_json(prefix + SECRETS_FILE, SECRETS_FILE)
    if why:
        return None, None, why
    sec, why = validate_secrets(sec, cfg)
    if why:
        return None, None, why
    return cfg, sec, None


def safe_mode_sentence(why):
    """The one console line for a bad config."""
    return "roost: safe mode: %s; fix it and reset the board." % why
