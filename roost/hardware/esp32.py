"""ESP32 drivers on ``machine``/``dht``. MicroPython-safe; imports the module without them.

Every driver takes its bus, pin or device object as a constructor argument (tests pass the
simulated ones from ``simdev``); only when none is given does it import ``machine`` or
``dht``, inside the constructor, so this module also imports on the unix port and CPython.
Bus trouble never escapes ``read()``: it becomes a Reading with health "error".
The ESP32-CAM visit detector (``CameraVisitSensor``, ``FrameDiffDetector``) is in
``camera.py`` and reachable here as ``esp32.CameraVisitSensor``, imported on first use.
"""

from roost.hardware import bme280 as _b
from roost.hardware.sensor import Sensor

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_OSRS_X1 = const(1)
_OSRS_X16 = const(5)
_MODE_FORCED = const(1)
_STATUS_MEASURING = const(0x08)
_STATUS_POLLS = const(50)  # bounded wait for a conversion (each poll is one bus read)


def __getattr__(name):
    """The ESP32-CAM detector lives in camera.py; loaded only when asked for (heap)."""
    if name in ("CameraVisitSensor", "FrameDiffDetector"):
        from roost.hardware import camera

        return getattr(camera, name)
    raise AttributeError(name)


def default_i2c(sda, scl, bus_id=0, freq=100000):
    """The board's hardware I2C on the given pins (imports machine here, not at load)."""
    import machine

    return machine.I2C(bus_id, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=freq)


class BME280(Sensor):
    """BME280 over ``machine.I2C`` with our own register access and integer compensation.

    Forced mode: each read triggers one conversion (T x1, P x16, H x1), so the chip sleeps
    between samples. The chip is set up lazily, so a board boots with the sensor unplugged
    and starts reading once it is plugged in.
    """

    kind = "bme280"
    units = {"temperature": "C", "humidity": "%", "pressure": "hPa"}
    sample_period_ms = 10000

    def __init__(self, i2c, address=None, name=None, sample_period_ms=None):
        Sensor.__init__(self, name, sample_period_ms)
        self.i2c = i2c
        self.address = address  # None: 0x77 or 0x76, whichever holds a BME280 (breakouts differ)
        self.calib = None
        self._buf = bytearray(8)
        self._meas = (_OSRS_X1 << 5) | (_OSRS_X16 << 2) | _MODE_FORCED

    def _setup(self):
        i2c, a = self.i2c, self.address
        if a is None:
            a = self._find()
        elif i2c.readfrom_mem(a, _b.REG_CHIP_ID, 1)[0] != _b.CHIP_ID:
            raise OSError(19)  # something else answers at this address
        i2c.writeto_mem(a, _b.REG_RESET, bytes((_b.RESET_WORD,)))
        tp = i2c.readfrom_mem(a, _b.REG_CALIB_TP, 24)
        h1 = i2c.readfrom_mem(a, _b.REG_CALIB_H1, 1)
        h = i2c.readfrom_mem(a, _b.REG_CALIB_H, 7)
        i2c.writeto_mem(a, _b.REG_CONFIG, b"\x00")  # no IIR filter, no standby
        self.calib = _b.parse_calib(tp, h1, h)
        self.address = a

    def _find(self):
        err = OSError(19)
        for a in _b.ADDRESSES:
            try:
                if self.i2c.readfrom_mem(a, _b.REG_CHIP_ID, 1)[0] == _b.CHIP_ID:
                    return a
            except OSError as e:
                err = e
        raise err  # no BME280 answers (yet): the next read tries again

    def _sample(self, now_ms):
        if self.calib is None:
            self._setup()
        i2c, a = self.i2c, self.address
        i2c.writeto_mem(a, _b.REG_CTRL_HUM, bytes((_OSRS_X1,)))  # before ctrl_meas
        i2c.writeto_mem(a, _b.REG_CTRL_MEAS, bytes((self._meas,)))
        for _ in range(_STATUS_POLLS):
            if not i2c.readfrom_mem(a, _b.REG_STATUS, 1)[0] & _STATUS_MEASURING:
                break
        else:
            raise OSError(110)  # conversion never finished
        i2c.readfrom_mem_into(a, _b.REG_DATA, self._buf)
        adc_t, adc_p, adc_h = _b.split_data(self._buf)
        t, p, h = _b.compensate(self.calib, adc_t, adc_p, adc_h)
        return {"temperature": t, "humidity": h, "pressure": p}


class DHT22(Sensor):
    """DHT22 through MicroPython's ``dht.DHT22``; pass ``device`` or a ``machine.Pin``."""

    kind = "dht22"
    units = {"temperature": "C", "humidity": "%"}
    sample_period_ms = 10000  # the sensor needs at least 2 s between measurements

    def __init__(self, pin=None, device=None, name=None, sample_period_ms=None):
        Sensor.__init__(self, name, sample_period_ms)
        if device is None:
            if pin is None:
                raise ValueError("DHT22 needs a pin or a device")
            import dht

            device = dht.DHT22(pin)
        self.device = device

    def _sample(self, now_ms):
        d = self.device
        d.measure()  # OSError(ETIMEDOUT) on a missing or glitching sensor
        return {"temperature": d.temperature(), "humidity": d.humidity()}


class PIR(Sensor):
    """A PIR motion sensor on a digital input; ``active_high`` for the common HC-SR501."""

    kind = "pir"
    units = {"motion": "bool"}
    sample_period_ms = 500

    def __init__(self, pin, active_high=True, name=None, sample_period_ms=None):
        Sensor.__init__(self, name, sample_period_ms)
        if isinstance(pin, int):
            import machine

            pin = machine.Pin(pin, machine.Pin.IN)
        self.pin = pin
        self.active_high = active_high

    def _sample(self, now_ms):
        v = 1 if self.pin.value() else 0
        return {"motion": v if self.active_high else 1 - v}


class Battery(Sensor):
    """Battery voltage through ``machine.ADC`` behind a resistor divider.

    ``divider_ratio`` is V_battery / V_pin (2.0 for two equal resistors). ``read_uv()`` is
    used where the port has it (calibrated on ESP32), else ``read_u16()`` scaled by
    ``full_scale_uv`` (3.3 V with 11 dB attenuation). Percent follows a LiPo line from
    ``empty_mv`` to ``full_mv``.
    """

    kind = "battery"
    units = {"voltage": "V", "percent": "%"}
    sample_period_ms = 60000

    def __init__(
        self,
        adc,
        divider_ratio=2.0,
        full_scale_uv=3300000,
        empty_mv=3300,
        full_mv=4200,
        name=None,
        sample_period_ms=None,
    ):
        Sensor.__init__(self, name, sample_period_ms)
        if isinstance(adc, int):
            import machine

            adc = machine.ADC(machine.Pin(adc))
            try:
                adc.atten(machine.ADC.ATTN_11DB)
            except AttributeError:
                pass
        if divider_ratio <= 0 or full_mv <= empty_mv:
            raise ValueError("divider_ratio must be positive and full_mv above empty_mv")
        self.adc = adc
        self.divider_ratio = divider_ratio
        self.full_scale_uv = full_scale_uv
        self.empty_mv = empty_mv
        self.full_mv = full_mv

    def _sample(self, now_ms):
        adc = self.adc
        if hasattr(adc, "read_uv"):
            uv = adc.read_uv()
        else:
            uv = adc.read_u16() * self.full_scale_uv // 65535
        mv = int(uv * self.divider_ratio) // 1000
        pct = (mv - self.empty_mv) * 100 // (self.full_mv - self.empty_mv)
        pct = 0 if pct < 0 else (100 if pct > 100 else pct)
        return {"voltage": mv / 1000, "percent": pct}
