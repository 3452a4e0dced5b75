"""Raspberry Pi drivers on Adafruit Blinka. CPython-only (Blinka does not run on MicroPython).

Each driver accepts an injected bus, pin or device object; only when none is given does it
import ``board``/``busio``/``digitalio``. Blinka's ``import board`` (or the pin lookup) fails
on a machine that is not a Pi: that becomes ``NoHardware`` with one sentence.
Driver libraries: ``adafruit-circuitpython-bme280`` and ``adafruit-circuitpython-dht``.
"""

from roost.hardware.bme280 import ADDRESSES
from roost.hardware.sensor import Sensor


class NoHardware(Exception):
    """No usable Pi hardware (or driver library) here; the message says what is missing."""


def _board_attr(name):
    try:
        import board

        return getattr(board, name)
    except Exception as e:  # ImportError, NotImplementedError, AttributeError, RuntimeError
        raise NoHardware(
            "no Raspberry Pi pin %s here (Blinka says: %s: %s); pass a bus or pin explicitly"
            % (name, type(e).__name__, e)
        ) from None


def default_i2c():
    """The Pi's I2C bus (GPIO2/3) through Blinka, or NoHardware."""
    scl = _board_attr("SCL")
    sda = _board_attr("SDA")
    try:
        import busio

        return busio.I2C(scl, sda)
    except Exception as e:
        raise NoHardware("cannot open the I2C bus (%s: %s)" % (type(e).__name__, e)) from None


class Unavailable(Sensor):
    """A sensor whose hardware could not be opened (I2C off, a driver missing): every read
    says "error" with the reason, so the node runs and shows the fault instead of a Pi's
    service restarting into the same traceback."""

    def __init__(self, kind, reason, units=None, name=None):
        self.kind = kind
        self.units = units or {}
        Sensor.__init__(self, name)
        self.reason = reason

    def _sample(self, now_ms):
        raise RuntimeError(self.reason)


def _import_bme280():
    try:
        from adafruit_bme280 import basic

        return basic
    except ImportError as e:
        raise NoHardware(
            "the BME280 driver is missing (%s): pip install adafruit-circuitpython-bme280" % e
        ) from None


class BME280(Sensor):
    """BME280 through ``adafruit_bme280.basic.Adafruit_BME280_I2C`` on a ``busio.I2C``.

    The Adafruit object is built on the first read (and rebuilt after a failure), so a
    sensor plugged in late still starts reading.
    """

    kind = "bme280"
    units = {"temperature": "C", "humidity": "%", "pressure": "hPa"}
    sample_period_ms = 10000

    def __init__(self, i2c=None, address=None, name=None, sample_period_ms=None):
        Sensor.__init__(self, name, sample_period_ms)
        self._driver_mod = _import_bme280()
        self.i2c = i2c if i2c is not None else default_i2c()
        self.address = address  # None: 0x77 or 0x76, whichever holds a BME280
        self.device = None

    def _open(self):
        open_at = self._driver_mod.Adafruit_BME280_I2C
        if self.address is not None:
            return open_at(self.i2c, address=self.address)
        err = None
        for a in ADDRESSES:
            try:
                device = open_at(self.i2c, address=a)
            except (OSError, RuntimeError, ValueError) as e:
                err = e  # nothing there, or not a BME280: try the other address
                continue
            self.address = a
            return device
        raise err

    def _sample(self, now_ms):
        if self.device is None:
            self.device = self._open()
        d = self.device
        try:
            t = d.temperature
            h = d.relative_humidity
            p = d.pressure
        except (OSError, RuntimeError, ValueError):
            self.device = None  # set the chip up again on the next read
            raise
        return {"temperature": t, "humidity": h, "pressure": p}


def _value(x):
    return x() if callable(x) else x


class DHT22(Sensor):
    """DHT22 through ``adafruit_dht.DHT22`` (or any object with measure/temperature/humidity).

    ``device`` may be an Adafruit DHT object (properties) or a MicroPython-style one
    (methods); both work. Checksum and timing failures (RuntimeError) read as "error".
    """

    kind = "dht22"
    units = {"temperature": "C", "humidity": "%"}
    sample_period_ms = 10000

    def __init__(self, pin=None, device=None, pin_name="D4", name=None, sample_period_ms=None):
        Sensor.__init__(self, name, sample_period_ms)
        if device is None:
            try:
                import adafruit_dht
            except ImportError as e:
                raise NoHardware(
                    "the DHT driver is missing (%s): pip install adafruit-circuitpython-dht" % e
                ) from None
            if pin is None:
                pin = _board_attr(pin_name)
            device = adafruit_dht.DHT22(pin, use_pulseio=False)
        self.device = device

    def _sample(self, now_ms):
        d = self.device
        d.measure()
        t = _value(d.temperature)
        h = _value(d.humidity)
        if t is None or h is None:
            raise RuntimeError("DHT22 returned no data")
        return {"temperature": t, "humidity": h}


class PIR(Sensor):
    """PIR motion on a ``digitalio.DigitalInOut`` (or any object with a ``value`` attribute)."""

    kind = "pir"
    units = {"motion": "bool"}
    sample_period_ms = 500

    def __init__(
        self, pin=None, pin_name="D17", active_high=True, name=None, sample_period_ms=None
    ):
        Sensor.__init__(self, name, sample_period_ms)
        if pin is None:
            board_pin = _board_attr(pin_name)
            try:
                import digitalio

                pin = digitalio.DigitalInOut(board_pin)
                pin.direction = digitalio.Direction.INPUT
            except Exception as e:
                raise NoHardware(
                    "cannot open %s as an input (%s: %s)" % (pin_name, type(e).__name__, e)
                ) from None
        self.pin = pin
        self.active_high = active_high

    def _sample(self, now_ms):
        v = 1 if _value(self.pin.value) else 0
        return {"motion": v if self.active_high else 1 - v}
