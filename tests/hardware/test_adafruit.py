"""CPython only: the REAL Adafruit drivers on our simulated devices, and the Blinka wrappers.

Needs adafruit-blinka, adafruit-circuitpython-bme280, adafruit-circuitpython-dht.
"""

import pytest

pytest.importorskip("adafruit_bme280.basic")
adafruit_dht = pytest.importorskip("adafruit_dht")

from adafruit_bme280 import basic as adafruit_bme280  # noqa: E402

from roost.hardware import blinka, esp32  # noqa: E402
from roost.hardware.sensor import HEALTH_ERROR, HEALTH_OK  # noqa: E402
from roost.hardware.simdev import (  # noqa: E402
    BME280Device,
    BusioI2C,
    DHT22Device,
    MachineI2C,
    SimBus,
)

CASES = (
    (-15.0, 20.0, 950.0),
    (0.5, 85.5, 1002.3),
    (21.37, 45.0, 1013.25),
    (28.0, 60.0, 980.0),
    (35.8, 12.0, 1040.0),
)


def _rig(address=0x77):
    dev = BME280Device()
    bus = SimBus({address: dev})
    return dev, bus


def test_real_adafruit_bme280_decodes_the_simulated_registers():
    dev, bus = _rig()
    sensor = adafruit_bme280.Adafruit_BME280_I2C(BusioI2C(bus), address=0x77)
    for t, h, p in CASES:
        dev.set(temperature=t, humidity=h, pressure=p)
        assert sensor.temperature == pytest.approx(t, abs=0.05)
        assert sensor.relative_humidity == pytest.approx(h, abs=0.5)
        assert sensor.pressure == pytest.approx(p, abs=0.5)


def test_adafruit_and_esp32_drivers_agree_on_the_same_registers():
    dev, bus = _rig()
    ada = adafruit_bme280.Adafruit_BME280_I2C(BusioI2C(bus), address=0x77)
    ours = esp32.BME280(MachineI2C(bus), address=0x77)
    for t, h, p in CASES:
        dev.set(temperature=t, humidity=h, pressure=p)
        r = ours.read(0)
        assert r.health == HEALTH_OK
        assert r.values["temperature"] == pytest.approx(ada.temperature, abs=0.02)
        assert r.values["humidity"] == pytest.approx(ada.relative_humidity, abs=0.1)
        assert r.values["pressure"] == pytest.approx(ada.pressure, abs=0.05)


def test_adafruit_refuses_a_bus_without_the_chip():
    bus = SimBus({})
    with pytest.raises(ValueError):
        adafruit_bme280.Adafruit_BME280_I2C(BusioI2C(bus), address=0x77)


def test_busio_fake_requires_the_lock():
    _, bus = _rig()
    i2c = BusioI2C(bus)
    with pytest.raises(RuntimeError):
        i2c.writeto(0x77, b"\xd0")
    assert i2c.try_lock()
    assert not i2c.try_lock()
    assert i2c.scan() == [0x77]
    buf = bytearray(3)
    i2c.writeto_then_readfrom(0x77, b"\xd0", buf, in_start=1, in_end=2)
    assert buf == bytearray(b"\x00\x60\x00")
    i2c.unlock()


def test_blinka_bme280_wrapper_on_injected_bus():
    dev, bus = _rig()
    s = blinka.BME280(i2c=BusioI2C(bus))
    dev.set(temperature=19.5, humidity=55.0, pressure=1001.0)
    r = s.read(0)
    assert r.health == HEALTH_OK
    assert r.values["temperature"] == pytest.approx(19.5, abs=0.05)
    assert r.values["pressure"] == pytest.approx(1001.0, abs=0.5)


def test_blinka_bme280_finds_a_breakout_at_0x76_by_itself():
    dev, bus = _rig(address=0x76)
    s = blinka.BME280(i2c=BusioI2C(bus))  # no address given: the real driver tries both
    dev.set(temperature=-3.5, humidity=70.0, pressure=990.0)
    r = s.read(0)
    assert r.health == HEALTH_OK and s.address == 0x76
    assert r.values["temperature"] == pytest.approx(-3.5, abs=0.05)


def test_blinka_bme280_bus_error_and_recovery():
    dev, bus = _rig()
    s = blinka.BME280(i2c=BusioI2C(bus))
    assert s.read(0).health == HEALTH_OK
    bus.unplugged = True
    r = s.read(1)
    assert r.health == HEALTH_ERROR
    assert r.values == {}
    bus.unplugged = False
    assert s.read(2).health == HEALTH_OK


def _adafruit_dht_on(sim):
    """The real adafruit_dht.DHT22, fed the pulse train our simulated sensor sends."""
    d = adafruit_dht.DHT22(object(), use_pulseio=False)
    d._get_pulses_bitbang = sim.pulses
    return d


def test_real_adafruit_dht_decodes_simulated_pulses():
    for t, h in ((23.4, 51.0), (-7.2, 88.8), (0.0, 0.0)):
        sim = DHT22Device(temperature=t, humidity=h)
        d = _adafruit_dht_on(sim)
        assert d.temperature == pytest.approx(t, abs=0.01)
        assert d.humidity == pytest.approx(h, abs=0.01)


def test_blinka_dht22_wrapper_with_adafruit_device_and_checksum_error():
    sim = DHT22Device(temperature=12.3, humidity=40.0)
    d = _adafruit_dht_on(sim)
    s = blinka.DHT22(device=d)
    r = s.read(0)
    assert r.health == HEALTH_OK
    assert r.values["temperature"] == pytest.approx(12.3, abs=0.01)
    # a corrupted bit: the real driver raises RuntimeError (checksum), we read "error"
    bad = sim.pulses()
    bad[3] = 70 if bad[3] < 51 else 26
    d2 = adafruit_dht.DHT22(object(), use_pulseio=False)
    d2._get_pulses_bitbang = lambda: bad
    assert blinka.DHT22(device=d2).read(0).health == HEALTH_ERROR


def test_blinka_dht22_wrapper_with_micropython_style_device():
    s = blinka.DHT22(device=DHT22Device(temperature=30.0, humidity=20.0))
    assert s.read(0).values == {"temperature": 30.0, "humidity": 20.0}


class _DigitalIn:
    value = True


def test_blinka_pir_on_injected_pin():
    assert blinka.PIR(pin=_DigitalIn()).read(0).values == {"motion": 1}


def test_no_hardware_is_one_clear_error():
    # This machine is not a Pi: Blinka's board has no GPIO4 / I2C, and we say so in a sentence.
    import platform

    if platform.machine().startswith(("arm", "aarch64")):
        pytest.skip("may be a real Pi")
    with pytest.raises(blinka.NoHardware) as e:
        blinka.DHT22(pin_name="D4")
    assert "D4" in str(e.value)
    with pytest.raises(blinka.NoHardware):
        blinka.BME280()


def test_a_pi_whose_bus_cannot_be_opened_runs_with_sensors_that_say_error():
    """I2C is off on a new Raspberry Pi OS: the node must run with its readings saying
    error (one sentence each on the console), not crash into a service restart loop. This
    machine has no Pi pins, which Blinka reports the same way."""
    from roost.hardware.blinka import NoHardware, default_i2c
    from roost.hardware.boards import make_sensors

    try:
        default_i2c()
        pytest.skip("this machine has an I2C bus Blinka can open")
    except NoHardware:
        pass
    said = []
    import roost.hardware.boards as boards

    sensors = boards._blinka(boards.get_profile("pi-4"), said.append)
    assert [s.kind for s in sensors] == ["bme280", "pir"] and len(said) == 2
    assert "raspi-config" in said[0] and all("readings say error" in x for x in said)
    assert all(s.read(0).health == "error" for s in sensors)
    assert [s.kind for s in make_sensors("pi-4", simulated=False)] == ["bme280", "pir"]
