"""Register-level simulated devices and buses for tests and emulation. MicroPython-safe.

- ``BME280Device``: the BME280 register map (chip id, calibration, control, status, data,
  soft reset). Set physical values; the raw ADC registers are found by inverting the
  datasheet compensation, so any correct driver decodes them back.
- ``SimBus``: devices by address, with fault injection (``fail_next``, ``unplugged``).
- ``BusioI2C``: a ``busio.I2C`` look-alike over a SimBus (for the Adafruit drivers).
- ``MachineI2C``: a ``machine.I2C`` look-alike over a SimBus (for our ESP32 drivers).
- ``DHT22Device``: a ``dht.DHT22`` look-alike (``measure()``, ``temperature()``,
  ``humidity()``) that can also render the 40-bit pulse train the sensor sends.
- ``Pin``, ``ADC``, ``FrameSource``: tiny stand-ins for ``machine.Pin``, ``machine.ADC`` and
  a camera's grayscale capture.
"""

from roost.hardware import bme280 as _b

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_EIO = const(5)
_ENODEV = const(19)
_ETIMEDOUT = const(110)
_T_SKIPPED = const(0x80000)  # what the data registers hold when a channel is skipped
_H_SKIPPED = const(0x8000)


class BME280Device:
    """The BME280 register map with physical values behind it."""

    def __init__(self, temperature=20.0, humidity=50.0, pressure=1013.25, calib=None):
        self.calib = dict(calib if calib is not None else _b.TYPICAL_CALIB)
        self.regs = bytearray(256)
        self.measurements = 0  # conversions performed (forced triggers or normal-mode reads)
        self._measuring_reads = 0
        tp, h1, h = _b.pack_calib(self.calib)
        self.regs[_b.REG_CALIB_TP : _b.REG_CALIB_TP + 24] = tp
        self.regs[_b.REG_CALIB_H1] = h1[0]
        self.regs[_b.REG_CALIB_H : _b.REG_CALIB_H + 7] = h
        self.regs[_b.REG_CHIP_ID] = _b.CHIP_ID
        self._adc = (_T_SKIPPED, _T_SKIPPED, _H_SKIPPED)
        self._reset()
        self.set(temperature, humidity, pressure)

    def _reset(self):
        for r in (_b.REG_CTRL_HUM, _b.REG_STATUS, _b.REG_CTRL_MEAS, _b.REG_CONFIG):
            self.regs[r] = 0
        self._osrs_h = 0  # ctrl_hum takes effect only at the next ctrl_meas write
        self.regs[_b.REG_DATA : _b.REG_DATA + 8] = _b.join_data(_T_SKIPPED, _T_SKIPPED, _H_SKIPPED)

    def set(self, temperature=None, humidity=None, pressure=None):
        """Change the physical values (None keeps the old one) and recompute the raw ADC."""
        if temperature is not None:
            self.temperature = temperature
        if humidity is not None:
            self.humidity = humidity
        if pressure is not None:
            self.pressure = pressure
        self._adc = _b.invert(self.calib, self.temperature, self.pressure, self.humidity)
        if self.regs[_b.REG_CTRL_MEAS] & 0x03 == 0x03:  # normal mode: data follows at once
            self._convert()

    def _convert(self):
        meas = self.regs[_b.REG_CTRL_MEAS]
        adc_t, adc_p, adc_h = self._adc
        if not (meas >> 5) & 0x07:
            adc_t = _T_SKIPPED
        if not (meas >> 2) & 0x07:
            adc_p = _T_SKIPPED
        if not self._osrs_h:
            adc_h = _H_SKIPPED
        self.regs[_b.REG_DATA : _b.REG_DATA + 8] = _b.join_data(adc_t, adc_p, adc_h)
        self.measurements += 1

    def read_reg(self, reg, n):
        out = bytearray(n)
        for i in range(n):
            r = (reg + i) & 0xFF
            if r == _b.REG_STATUS:
                # "measuring" (bit 3) for one status read after a forced trigger
                out[i] = 0x08 if self._measuring_reads else 0
                if self._measuring_reads:
                    self._measuring_reads -= 1
            elif r == _b.REG_RESET:
                out[i] = 0
            else:
                out[i] = self.regs[r]
        return out

    def write_reg(self, reg, data):
        for i in range(len(data)):
            r = (reg + i) & 0xFF
            v = data[i] & 0xFF
            if r == _b.REG_RESET:
                if v == _b.RESET_WORD:
                    self._reset()
            elif r == _b.REG_CTRL_HUM:
                self.regs[r] = v & 0x07
            elif r == _b.REG_CTRL_MEAS:
                self._osrs_h = self.regs[_b.REG_CTRL_HUM] & 0x07
                self.regs[r] = v
                mode = v & 0x03
                if mode in (1, 2):  # forced: one conversion, then back to sleep
                    self._convert()
                    self._measuring_reads = 1
                    self.regs[r] = v & 0xFC
                elif mode == 3:
                    self._convert()
            elif r == _b.REG_CONFIG:
                self.regs[r] = v & 0xFD
            # every other register is read-only


class SimBus:
    """Devices by 7-bit address; faults on demand. Each device has read_reg/write_reg."""

    def __init__(self, devices=None):
        self.devices = dict(devices) if devices else {}
        self.unplugged = False  # True: every transaction fails (ENODEV)
        self._fail_next = 0
        self._ptr = {}  # register pointer per address (set by a plain write)
        self.stats = {"transactions": 0, "faults": 0}

    def attach(self, address, device):
        self.devices[address] = device
        return device

    def fail_next(self, n=1):
        """The next n transactions raise OSError(EIO), as a glitching wire would."""
        self._fail_next = n

    def _device(self, address):
        self.stats["transactions"] += 1
        if self.unplugged:
            self.stats["faults"] += 1
            raise OSError(_ENODEV)
        if self._fail_next > 0:
            self._fail_next -= 1
            self.stats["faults"] += 1
            raise OSError(_EIO)
        dev = self.devices.get(address)
        if dev is None:
            raise OSError(_ENODEV)
        return dev

    def scan(self):
        if self.unplugged:
            return []
        return sorted(self.devices)

    def write(self, address, data):
        dev = self._device(address)
        if len(data) == 0:
            return  # address probe
        self._ptr[address] = data[0]
        if len(data) > 1:
            dev.write_reg(data[0], data[1:])

    def read(self, address, n):
        dev = self._device(address)
        return dev.read_reg(self._ptr.get(address, 0), n)

    def read_mem(self, address, reg, n):
        return self._device(address).read_reg(reg, n)

    def write_mem(self, address, reg, data):
        self._device(address).write_reg(reg, data)


def _span(buf, start, end):
    return len(buf) if end is None else end


class BusioI2C:
    """Looks like ``busio.I2C`` (lock, writeto, readfrom_into, writeto_then_readfrom, scan)."""

    def __init__(self, bus):
        self.bus = bus
        self._locked = False

    def try_lock(self):
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self):
        self._locked = False

    def _check_lock(self):
        if not self._locked:
            raise RuntimeError("I2C bus used without try_lock()")

    def scan(self):
        self._check_lock()
        return self.bus.scan()

    def writeto(self, address, buffer, *, start=0, end=None):
        self._check_lock()
        self.bus.write(address, bytes(buffer[start : _span(buffer, start, end)]))

    def readfrom_into(self, address, buffer, *, start=0, end=None):
        self._check_lock()
        end = _span(buffer, start, end)
        buffer[start:end] = self.bus.read(address, end - start)

    def writeto_then_readfrom(
        self, address, buffer_out, buffer_in, *, out_start=0, out_end=None, in_start=0, in_end=None
    ):
        self.writeto(address, buffer_out, start=out_start, end=out_end)
        self.readfrom_into(address, buffer_in, start=in_start, end=in_end)

    def deinit(self):
        self._locked = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deinit()
        return False


class MachineI2C:
    """Looks like ``machine.I2C`` (memory-style register access, scan, plain read/write)."""

    def __init__(self, bus):
        self.bus = bus

    def scan(self):
        return self.bus.scan()

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        return bytes(self.bus.read_mem(addr, memaddr, nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        buf[:] = self.bus.read_mem(addr, memaddr, len(buf))

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self.bus.write_mem(addr, memaddr, bytes(buf))

    def writeto(self, addr, buf, stop=True):
        self.bus.write(addr, bytes(buf))
        return len(buf)

    def readfrom(self, addr, nbytes, stop=True):
        return bytes(self.bus.read(addr, nbytes))

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = self.bus.read(addr, len(buf))


class DHT22Device:
    """Looks like MicroPython's ``dht.DHT22``; ``fail_next``/``unplugged`` make measure() fail."""

    def __init__(self, temperature=20.0, humidity=50.0):
        self.temperature_c = temperature
        self.humidity_rh = humidity
        self.unplugged = False
        self._fail_next = 0
        self._t10 = 0
        self._h10 = 0
        self.measurements = 0

    def set(self, temperature=None, humidity=None):
        if temperature is not None:
            self.temperature_c = temperature
        if humidity is not None:
            self.humidity_rh = humidity

    def fail_next(self, n=1):
        self._fail_next = n

    def frame(self):
        """The 5 bytes the sensor sends: humidity*10, temperature*10 (sign bit), checksum."""
        h = int(round(self.humidity_rh * 10))
        h = 0 if h < 0 else (1000 if h > 1000 else h)
        t = int(round(self.temperature_c * 10))
        tw = (-t) | 0x8000 if t < 0 else t
        b = [(h >> 8) & 0xFF, h & 0xFF, (tw >> 8) & 0xFF, tw & 0xFF]
        b.append((b[0] + b[1] + b[2] + b[3]) & 0xFF)
        return bytes(b)

    def pulses(self):
        """81 alternating low/high durations in us: 40 bits (26 us high = 0, 70 us = 1)."""
        out = []
        for byte in self.frame():
            for i in range(7, -1, -1):
                out.append(50)
                out.append(70 if (byte >> i) & 1 else 26)
        out.append(50)
        return out

    def measure(self):
        if self.unplugged or self._fail_next > 0:
            if self._fail_next > 0:
                self._fail_next -= 1
            raise OSError(_ETIMEDOUT)
        f = self.frame()
        self._h10 = (f[0] << 8) | f[1]
        t = ((f[2] & 0x7F) << 8) | f[3]
        self._t10 = -t if f[2] & 0x80 else t
        self.measurements += 1

    def temperature(self):
        return self._t10 / 10

    def humidity(self):
        return self._h10 / 10


class Pin:
    """Looks like ``machine.Pin`` for input: ``value()`` reads, ``value(v)`` drives it."""

    IN = 1
    OUT = 3
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id=0, mode=1, pull=None, value=0):
        self.id = id
        self._value = value

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0
        return None

    def __call__(self, v=None):
        return self.value(v)


class ADC:
    """Looks like ``machine.ADC`` on an ESP32: ``read_uv()`` and ``read_u16()``."""

    def __init__(self, microvolts=1900000, full_scale_uv=3300000):
        self.microvolts = microvolts
        self.full_scale_uv = full_scale_uv
        self.unplugged = False

    def read_uv(self):
        if self.unplugged:
            raise OSError(_EIO)
        return self.microvolts

    def read_u16(self):
        if self.unplugged:
            raise OSError(_EIO)
        v = self.microvolts * 65535 // self.full_scale_uv
        return 65535 if v > 65535 else v


class FrameSource:
    """A camera capture stand-in: returns the grayscale frames it was given, then the last."""

    def __init__(self, frames):
        self.frames = list(frames)
        self.captures = 0

    def __call__(self):
        i = self.captures if self.captures < len(self.frames) else len(self.frames) - 1
        self.captures += 1
        return self.frames[i]
