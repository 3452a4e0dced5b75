"""Register-level BME280 simulator and the machine.I2C-style bus (MicroPython-safe)."""

from roost.hardware import bme280 as b
from roost.hardware.simdev import ADC, BME280Device, DHT22Device, MachineI2C, SimBus

_ADDR = 0x77


def _rig(**kw):
    dev = BME280Device(**kw)
    bus = SimBus({_ADDR: dev})
    return dev, bus, MachineI2C(bus)


def test_chip_id_and_scan():
    _, _, i2c = _rig()
    assert i2c.scan() == [_ADDR]
    assert i2c.readfrom_mem(_ADDR, 0xD0, 1) == b"\x60"


def test_calibration_registers_hold_the_constants():
    dev, _, i2c = _rig()
    tp = i2c.readfrom_mem(_ADDR, 0x88, 24)
    h1 = i2c.readfrom_mem(_ADDR, 0xA1, 1)
    h = i2c.readfrom_mem(_ADDR, 0xE1, 7)
    assert b.parse_calib(tp, h1, h) == b.TYPICAL_CALIB
    assert dev.calib["T1"] == 27504


def test_calibration_pack_parse_round_trip_with_negative_h4_h5():
    c = dict(b.TYPICAL_CALIB)
    c["H4"] = -300
    c["H5"] = -17
    c["H6"] = -5
    tp, h1, h = b.pack_calib(c)
    assert b.parse_calib(tp, h1, h) == c


def test_data_only_after_a_forced_conversion():
    dev, _, i2c = _rig(temperature=25.0, humidity=50.0, pressure=1000.0)
    raw = i2c.readfrom_mem(_ADDR, 0xF7, 8)
    assert b.split_data(raw) == (0x80000, 0x80000, 0x8000)  # reset values: nothing measured
    i2c.writeto_mem(_ADDR, 0xF2, b"\x01")
    i2c.writeto_mem(_ADDR, 0xF4, bytes(((1 << 5) | (5 << 2) | 1,)))
    assert i2c.readfrom_mem(_ADDR, 0xF3, 1)[0] & 0x08  # measuring once
    assert not i2c.readfrom_mem(_ADDR, 0xF3, 1)[0] & 0x08
    assert i2c.readfrom_mem(_ADDR, 0xF4, 1)[0] & 0x03 == 0  # back to sleep
    t, p, h = b.compensate(dev.calib, *b.split_data(i2c.readfrom_mem(_ADDR, 0xF7, 8)))
    assert abs(t - 25.0) < 0.011
    assert abs(p - 1000.0) < 0.01
    assert abs(h - 50.0) < 0.01
    assert dev.measurements == 1


def test_humidity_skipped_without_ctrl_hum():
    _, _, i2c = _rig()
    i2c.writeto_mem(_ADDR, 0xF4, bytes(((1 << 5) | (1 << 2) | 1,)))
    adc_t, adc_p, adc_h = b.split_data(i2c.readfrom_mem(_ADDR, 0xF7, 8))
    assert adc_h == 0x8000
    assert adc_t != 0x80000


def test_soft_reset_clears_control_registers():
    _, _, i2c = _rig()
    i2c.writeto_mem(_ADDR, 0xF2, b"\x01")
    i2c.writeto_mem(_ADDR, 0xF5, b"\xa0")
    i2c.writeto_mem(_ADDR, 0xE0, b"\xb6")
    assert i2c.readfrom_mem(_ADDR, 0xF2, 4) == b"\x00\x00\x00\x00"
    assert i2c.readfrom_mem(_ADDR, 0xD0, 1) == b"\x60"


def test_inversion_over_a_range_of_values():
    c = b.TYPICAL_CALIB
    for t, p, h in (
        (-20.0, 900.0, 5.0),
        (0.0, 980.5, 30.0),
        (22.37, 1013.25, 61.2),
        (45.0, 1080.0, 99.0),
    ):
        t2, p2, h2 = b.compensate(c, *b.invert(c, t, p, h))
        assert abs(t2 - t) < 0.011, (t, t2)
        assert abs(p2 - p) < 0.01, (p, p2)
        assert abs(h2 - h) < 0.01, (h, h2)


def test_normal_mode_follows_new_values():
    dev, _, i2c = _rig(temperature=10.0)
    i2c.writeto_mem(_ADDR, 0xF2, b"\x01")
    i2c.writeto_mem(_ADDR, 0xF4, bytes(((1 << 5) | (1 << 2) | 3,)))
    dev.set(temperature=30.0)
    t, _, _ = b.compensate(dev.calib, *b.split_data(i2c.readfrom_mem(_ADDR, 0xF7, 8)))
    assert abs(t - 30.0) < 0.011


def test_bus_faults_raise_oserror_and_unknown_address():
    _, bus, i2c = _rig()
    bus.fail_next(2)
    for _ in range(2):
        try:
            i2c.readfrom_mem(_ADDR, 0xD0, 1)
        except OSError:
            continue
        raise AssertionError("fault not raised")
    assert i2c.readfrom_mem(_ADDR, 0xD0, 1) == b"\x60"
    try:
        i2c.readfrom_mem(0x10, 0xD0, 1)
    except OSError:
        pass
    else:
        raise AssertionError("absent device answered")
    bus.unplugged = True
    assert i2c.scan() == []


def test_plain_write_then_read_uses_register_pointer():
    _, _, i2c = _rig()
    i2c.writeto(_ADDR, b"\xd0")
    assert i2c.readfrom(_ADDR, 1) == b"\x60"
    buf = bytearray(2)
    i2c.readfrom_mem_into(_ADDR, 0x88, buf)
    assert buf[0] | (buf[1] << 8) == 27504


def test_dht22_device_frame_and_negative_temperature():
    d = DHT22Device(temperature=-3.4, humidity=65.2)
    f = d.frame()
    assert f[2] & 0x80
    assert (f[0] + f[1] + f[2] + f[3]) & 0xFF == f[4]
    d.measure()
    assert d.temperature() == -3.4
    assert d.humidity() == 65.2
    assert len(d.pulses()) == 81


def test_adc_scales():
    a = ADC(microvolts=1650000)
    assert a.read_uv() == 1650000
    assert 32700 < a.read_u16() < 32800
