"""Board profiles and the sensor factory (MicroPython-safe)."""

from roost.hardware.boards import PROFILE_NAMES, get_profile, make_sensors
from roost.hardware.sensor import Reading


def test_known_profiles_load():
    for name in ("esp32", "esp32-wrover", "esp32-s3", "esp32-cam", "pi-zero-2w", "pi-4",
                 "pi-5"):
        p = get_profile(name)
        assert p.name == name
        assert p.interpreter in ("micropython", "cpython")
        assert p.roles
        for role in p.roles:
            assert role in ("gossip", "paxos", "mapreduce")
        for key in ("i2c_sda", "i2c_scl", "dht", "pir", "adc", "safe_mode"):
            assert key in p.pins
    assert len(PROFILE_NAMES) == 7


def test_unknown_profile_is_value_error_naming_valid_ones():
    try:
        get_profile("esp8266")
    except ValueError as e:
        msg = str(e)
        assert "esp8266" in msg
        assert "esp32-s3" in msg and "pi-5" in msg
        return
    raise AssertionError("unknown board accepted")


def test_heap_budgets():
    esp = get_profile("esp32")
    assert 90 * 1024 <= esp.heap_bytes <= 110 * 1024
    assert esp.heapsize_arg() == "100K"
    assert not esp.psram
    assert get_profile("esp32-s3").psram
    assert get_profile("esp32-s3").heap_bytes > esp.heap_bytes
    assert get_profile("pi-4").heap_bytes is None
    assert get_profile("pi-4").heapsize_arg() is None
    assert get_profile("pi-zero-2w").interpreter == "cpython"
    assert get_profile("esp32-cam").pins["camera"]


def test_roles_fit():
    assert get_profile("pi-4").fits("mapreduce")
    assert not get_profile("esp32-cam").fits("paxos")
    # a replica does not fit a board without PSRAM (docs/hardware/firmware.md, "Heap");
    # the WROVER is the same board and wiring with PSRAM
    esp, wrover = get_profile("esp32"), get_profile("esp32-wrover")
    assert esp.fits("gossip") and not esp.fits("paxos")
    assert wrover.fits("paxos") and wrover.psram and wrover.heap_bytes > 1024 * 1024
    assert wrover.pins == esp.pins and wrover.sensors == esp.sensors


def test_make_sensors_simulated_defaults():
    for name in PROFILE_NAMES:
        p = get_profile(name)
        sensors = make_sensors(name, simulated=True, seed=4)
        assert [s.kind for s in sensors] == list(p.sensors)
        for s in sensors:
            r = s.read(0)
            assert isinstance(r, Reading)
            assert r.health == "ok"
            assert sorted(r.units) == sorted(s.units)


def test_make_sensors_seeded_and_shared_weather():
    a = make_sensors("pi-zero-2w", seed=8)
    b = make_sensors("pi-zero-2w", seed=8)
    assert [s.read(5000).values for s in a] == [s.read(5000).values for s in b]
    bme, dht = a[0], a[1]
    assert bme.weather is dht.weather
    assert abs(bme.read(0).values["temperature"] - dht.read(0).values["temperature"]) < 2.0


def test_a_board_without_a_camera_module_reads_errors_and_boots():
    # stock MicroPython (and CPython) has no camera module: the ESP32-CAM's node still
    # starts, and its camera sensor says "error" at each sample instead
    from roost.hardware.boards import _board_camera
    from roost.hardware.camera import CameraVisitSensor

    s = CameraVisitSensor(_board_camera(), 96, 96)
    r = s.read(1000)
    assert r.health == "error" and s.stats["errors"] == 1
    assert isinstance(s.last_error, OSError) and s.last_error.args[0] == 19


class _OldDriver:
    """The shape of micropython-camera-driver's module: camera.init(...), camera.capture()."""

    GRAYSCALE = 3
    FRAME_96X96 = 0

    def __init__(self):
        self.inits = []

    def init(self, n, format=None, framesize=None):
        self.inits.append((n, format, framesize))

    def capture(self):
        return bytes(64)  # a real one is 96x96: small here, for the MicroPython gate's heap


class _ApiDriver:
    """The shape of micropython-camera-API's module: a Camera class, and capture() lending
    one frame buffer that the next capture overwrites."""

    class PixelFormat:
        GRAYSCALE = 3

    class FrameSize:
        R96X96 = 0

    def __init__(self):
        driver = self
        self.made = []
        self.buf = bytearray(64)

        class Camera:
            def __init__(self, *, pixel_format=0, frame_size=6, data_pins=None, **pins):
                driver.made.append((pixel_format, frame_size, data_pins, pins))

            def capture(self):
                driver.buf[0] = (driver.buf[0] + 1) % 256
                if driver.buf[0] == 3:
                    return None  # the driver had no frame this time
                return memoryview(driver.buf)

        self.Camera = Camera


def test_the_camera_works_with_either_camera_module_a_firmware_may_carry():
    from roost.hardware.boards import _board_camera

    old = _OldDriver()
    cap = _board_camera(old)
    assert cap() == bytes(64) and cap() == bytes(64)
    assert old.inits == [(0, 3, 0)]  # set up once, grayscale 96x96
    api = _ApiDriver()
    cap = _board_camera(api)
    first = cap()
    second = cap()
    assert len(api.made) == 1 and api.made[0][:2] == (3, 0)
    assert api.made[0][2] == [5, 18, 19, 21, 36, 39, 34, 35]  # the AI-Thinker's wiring
    assert api.made[0][3]["xclk_pin"] == 0 and api.made[0][3]["powerdown_pin"] == 32
    # each frame is a copy: the driver's buffer changing does not change the frame before
    assert first[0] == 1 and second[0] == 2 and bytes(first[1:]) == bytes(63)
    assert cap() is None  # no frame from the driver: None, which the sensor counts as an error
    assert cap()[0] == 4
