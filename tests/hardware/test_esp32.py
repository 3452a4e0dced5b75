"""ESP32 drivers on simulated devices (MicroPython-safe: no machine, no dht needed)."""

from roost.hardware import esp32
from roost.hardware.sensor import HEALTH_ERROR, HEALTH_OK
from roost.hardware.simdev import ADC, BME280Device, DHT22Device, MachineI2C, Pin, SimBus

# (temperature C, humidity %RH, pressure hPa) across the BME280's useful range
CASES = (
    (-15.0, 20.0, 950.0),
    (0.5, 85.5, 1002.3),
    (21.37, 45.0, 1013.25),
    (35.8, 12.0, 1040.0),
)


def _rig(address=0x77, **kw):
    dev = BME280Device(**kw)
    bus = SimBus({address: dev})
    return dev, bus, esp32.BME280(MachineI2C(bus), address=address)


def test_bme280_decodes_the_simulated_registers():
    dev, _, sensor = _rig()
    for i, (t, h, p) in enumerate(CASES):
        dev.set(temperature=t, humidity=h, pressure=p)
        r = sensor.read(i * 1000)
        assert r.health == HEALTH_OK
        assert abs(r.values["temperature"] - t) < 0.05, (t, r.values)
        assert abs(r.values["humidity"] - h) < 0.5, (h, r.values)
        assert abs(r.values["pressure"] - p) < 0.5, (p, r.values)
    assert dev.measurements == len(CASES)  # one forced conversion per read


def test_bme280_at_the_other_address():
    _, _, sensor = _rig(address=0x76, temperature=18.0)
    assert abs(sensor.read(0).values["temperature"] - 18.0) < 0.05


def test_bme280_without_an_address_finds_either_breakout():
    for address in (0x77, 0x76):
        dev = BME280Device(temperature=23.0)
        sensor = esp32.BME280(MachineI2C(SimBus({address: dev})))
        r = sensor.read(0)
        assert r.health == HEALTH_OK and sensor.address == address
        assert abs(r.values["temperature"] - 23.0) < 0.05
    bus = SimBus({})
    sensor = esp32.BME280(MachineI2C(bus))  # nothing on the bus yet: an error reading
    assert sensor.read(0).health == HEALTH_ERROR and sensor.address is None
    bus.devices[0x76] = BME280Device(temperature=5.0)  # plugged in later
    assert abs(sensor.read(1).values["temperature"] - 5.0) < 0.05


def test_bme280_bus_error_is_a_reading_not_an_exception():
    _, bus, sensor = _rig()
    assert sensor.read(0).health == HEALTH_OK
    bus.fail_next(1)
    r = sensor.read(1)
    assert r.health == HEALTH_ERROR
    assert r.values == {}
    assert sensor.stats["errors"] == 1
    assert sensor.read(2).health == HEALTH_OK


def test_bme280_unplugged_at_boot_then_plugged():
    _, bus, sensor = _rig(temperature=12.0)
    bus.unplugged = True
    assert sensor.read(0).health == HEALTH_ERROR
    assert sensor.calib is None
    bus.unplugged = False
    r = sensor.read(1)
    assert r.health == HEALTH_OK
    assert abs(r.values["temperature"] - 12.0) < 0.05


def test_bme280_wrong_chip_is_an_error():
    dev, _, sensor = _rig()
    dev.regs[0xD0] = 0x58  # a BMP280 answers instead
    assert sensor.read(0).health == HEALTH_ERROR


def test_dht22_driver_on_sim_device():
    dev = DHT22Device(temperature=23.46, humidity=51.04)
    s = esp32.DHT22(device=dev)
    r = s.read(0)
    assert r.health == HEALTH_OK
    assert abs(r.values["temperature"] - 23.5) < 0.01
    assert abs(r.values["humidity"] - 51.0) < 0.01
    dev.fail_next(1)
    assert s.read(1).health == HEALTH_ERROR
    assert s.read(2).health == HEALTH_OK


def test_dht22_needs_pin_or_device():
    try:
        esp32.DHT22()
    except ValueError:
        return
    raise AssertionError("no pin, no device accepted")


def test_pir_active_high_and_low():
    pin = Pin(27)
    s = esp32.PIR(pin)
    assert s.read(0).values == {"motion": 0}
    pin.value(1)
    assert s.read(1).values == {"motion": 1}
    inv = esp32.PIR(pin, active_high=False)
    assert inv.read(2).values == {"motion": 0}


def test_battery_divider_and_percent():
    adc = ADC(microvolts=1900000)  # 3.8 V behind a 2:1 divider
    s = esp32.Battery(adc, divider_ratio=2.0)
    r = s.read(0)
    assert abs(r.values["voltage"] - 3.8) < 0.002
    assert r.values["percent"] == 55
    adc.unplugged = True
    assert s.read(1).health == HEALTH_ERROR


class _U16Only:
    def read_u16(self):
        return 65535


def test_battery_without_read_uv_uses_u16():
    r = esp32.Battery(_U16Only(), divider_ratio=1.5).read(0)
    assert abs(r.values["voltage"] - 4.95) < 0.002
    assert r.values["percent"] == 100
