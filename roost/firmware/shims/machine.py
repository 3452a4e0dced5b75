"""Simulated ``machine`` for the virtual board (the unix port has no pins or watchdog).

Simulated parts, and how they differ from an ESP32:
- ``Pin``: every input reads 1 (pulled up) unless the board's pins file says otherwise:
  ``roost board serve --hold-pin 0`` or writing ``{"0": 0}`` to the file named by
  ``ROOST_VBOARD_PINS`` (read at every ``value()``, so it can change while the board runs).
- ``WDT``: counts feeds; it does not reset the board (not enforced).
- ``reset()``: a hard reset (the virtual board restarts the interpreter, runs boot.py and
  main.py); ``soft_reset()``: a soft reset. ``unique_id()``: 6 bytes from ROOST_VBOARD_ID.
- ``I2C``: an empty bus (scan finds nothing, transfers raise OSError ENODEV, as with no
  sensor wired); ``ADC``: reads 0.
"""

import json
import os

RESET_REQUEST = [None]  # "hard" or "soft": read by the agent after SystemExit
_ENODEV = 19


def _pins():
    path = os.getenv("ROOST_VBOARD_PINS")
    if not path:
        return {}
    try:
        with open(path) as f:
            d = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        self.id = id
        self.mode = mode
        self._out = 0 if value is None else (1 if value else 0)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        self.mode = mode
        if value is not None:
            self._out = 1 if value else 0

    def value(self, v=None):
        if v is not None:
            self._out = 1 if v else 0
            return None
        if self.mode == Pin.OUT:
            return self._out
        held = _pins().get(str(self.id))
        return 1 if held is None else (1 if held else 0)

    def on(self):
        self._out = 1

    def off(self):
        self._out = 0

    def irq(self, handler=None, trigger=3):
        return None

    def __call__(self, v=None):
        return self.value(v)


class WDT:
    def __init__(self, *, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class I2C:
    # I2C(id, *, scl, sda, freq, timeout), I2C(id) or I2C(*, scl, sda), as on the port; only
    # what board code calls (every line here costs the virtual board heap a board does not pay)
    def __init__(self, id=-1, *, scl=None, sda=None, freq=400000, timeout=50000):
        if id == -1 and (scl is None or sda is None):
            raise TypeError("I2C needs a bus id, or scl and sda")

    def scan(self):
        return []

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        raise OSError(_ENODEV)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        raise OSError(_ENODEV)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        raise OSError(_ENODEV)



class ADC:
    ATTN_11DB = 3

    def __init__(self, id, *, sample_ns=None, atten=None):
        self.pin = id

    def atten(self, atten):
        pass

    def read(self):
        return 0

    def read_u16(self):
        return 0

    def read_uv(self):
        return 0


def unique_id():
    s = os.getenv("ROOST_VBOARD_ID") or "0"
    n = 0
    for ch in s:
        n = (n * 131 + ord(ch)) & 0xFFFFFFFFFFFF
    return bytes((n >> (8 * i)) & 0xFF for i in range(6))


def freq(hz=None):
    return 240000000


SOFT_RESET = 5  # the ESP32 port's value


def reset_cause():
    return SOFT_RESET


def idle():
    pass


def reset():
    RESET_REQUEST[0] = "hard"
    raise SystemExit


def soft_reset():
    RESET_REQUEST[0] = "soft"
    raise SystemExit
