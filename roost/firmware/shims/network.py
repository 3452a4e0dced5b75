"""Simulated ``network`` for the virtual board: a station that connects at once.

The password handed to ``connect`` is kept only to answer ``isconnected``; never printed.
The node's real traffic goes over the host's loopback (the unix port's sockets).
"""

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_GOT_IP = 1010


_IF = {}  # interface -> [active, ssid]: shared by every WLAN object, as on a chip


class WLAN:
    """One of the board's interfaces: a second ``WLAN(STA_IF)`` is the same station (the
    node asks a new one for its address after boot.py connected the first)."""

    def __init__(self, interface=STA_IF):
        self.interface = interface
        self._st = _IF.setdefault(interface, [False, None])

    def active(self, on=None):
        if on is None:
            return self._st[0]
        self._st[0] = bool(on)
        return None

    def connect(self, ssid=None, password=None, *, bssid=None):
        if not self._st[0]:
            raise OSError("Wifi Not Started")
        self._st[1] = ssid

    def disconnect(self):
        self._st[1] = None

    def isconnected(self):
        return self._st[0] and self._st[1] is not None

    def status(self, param=None):
        if param == "rssi":
            return -50
        return STAT_GOT_IP if self.isconnected() else STAT_IDLE

    def ifconfig(self, cfg=None):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, param=None, **kwargs):  # config("ssid") reads; config(key=...) is ignored
        if param in ("ssid", "essid"):
            return self._st[1] or ""
        if param == "mac":
            return b"\x02\x00\x00\x00\x00\x01"
        return None
