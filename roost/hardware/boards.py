"""Board profiles: heap budget, default pins, default sensors, roles. MicroPython-safe.

``heap_bytes`` is what ``micropython -X heapsize=`` should use to emulate the board (None
for Pi-class boards, which run CPython with memory to spare). Pins are GPIO numbers (BCM
numbering on a Pi); None means the board has no spare pin or no ADC for that job.
"""


class BoardProfile:
    __slots__ = (
        "name",
        "interpreter",
        "heap_bytes",
        "psram",
        "pins",
        "sensors",
        "roles",
        "note",
    )

    def __init__(self, name, interpreter, heap_bytes, psram, pins, sensors, roles, note):
        self.name = name
        self.interpreter = interpreter
        self.heap_bytes = heap_bytes
        self.psram = psram
        self.pins = pins
        self.sensors = sensors
        self.roles = roles
        self.note = note

    def fits(self, role):
        return role in self.roles

    def heapsize_arg(self):
        """The ``-X heapsize=`` value for the unix port, or None for CPython boards."""
        if self.heap_bytes is None:
            return None
        return "%dK" % (self.heap_bytes // 1024)

    def __repr__(self):
        return "BoardProfile(%s)" % self.name


def _pins(sda, scl, dht, pir, adc, safe_mode, camera=False):
    return {
        "i2c_sda": sda,
        "i2c_scl": scl,
        "dht": dht,
        "pir": pir,
        "adc": adc,
        "safe_mode": safe_mode,
        "camera": camera,
    }


_ALL_ROLES = ("gossip", "paxos", "mapreduce")
_ESP32_PINS = _pins(21, 22, 4, 27, 34, 0)  # an ESP32-DevKitC, WROOM or WROVER module
_ESP32_SENSORS = ("bme280", "pir", "battery")

_PROFILES = (
    BoardProfile(
        "esp32", "micropython", 100 * 1024, False,
        _ESP32_PINS, _ESP32_SENSORS,
        ("gossip",),
        "ESP32-WROOM devkit without PSRAM: about 100 KB of free heap after Wi-Fi; a gossip "
        "member at most, with its code in flash (not measured on a real board: the 64-bit "
        "emulation needs 152 KB for one from ROMFS, 224 KB with its code in the heap), and "
        "a replica needs PSRAM (esp32-wrover).",
    ),
    BoardProfile(
        "esp32-wrover", "micropython", 2048 * 1024, True,
        dict(_ESP32_PINS), _ESP32_SENSORS,
        ("gossip", "paxos"),
        "ESP32-WROVER devkit with 4 MB PSRAM (MicroPython's SPIRAM firmware keeps the heap "
        "there): the esp32's pins and sensors, room for a replica.",
    ),
    BoardProfile(
        "esp32-s3", "micropython", 2048 * 1024, True,
        _pins(8, 9, 4, 5, 1, 0),
        ("bme280", "pir", "battery"),
        _ALL_ROLES,
        "ESP32-S3 with 8 MB octal PSRAM; the MicroPython heap lives in PSRAM.",
    ),
    BoardProfile(
        "esp32-cam", "micropython", 1024 * 1024, True,
        _pins(14, 15, None, 13, None, 12, camera=True),
        ("camera", "pir"),
        ("gossip",),
        "AI-Thinker ESP32-CAM: 4 MB PSRAM shared with frame buffers; the camera takes most pins.",
    ),
    BoardProfile(
        "pi-zero-2w", "cpython", None, False,
        _pins(2, 3, 4, 17, None, 27),
        ("bme280", "dht22", "pir"),
        _ALL_ROLES,
        "Raspberry Pi Zero 2 W: 512 MB RAM, Blinka drivers.",
    ),
    BoardProfile(
        "pi-4", "cpython", None, False,
        _pins(2, 3, 4, 17, None, 27),
        ("bme280", "pir"),
        _ALL_ROLES,
        "Raspberry Pi 4: gateway-class, Blinka drivers.",
    ),
    BoardProfile(
        "pi-5", "cpython", None, False,
        _pins(2, 3, 4, 17, None, 27),
        ("bme280", "pir"),
        _ALL_ROLES,
        "Raspberry Pi 5: gateway-class, Blinka drivers (GPIO through the RP1 chip).",
    ),
)  # fmt: skip

PROFILE_NAMES = tuple(p.name for p in _PROFILES)


def a_board(name):
    """'an esp32', 'a pi-4': a board's name with its article, for sentences."""
    return ("an " if name[:1] in "aeiou" else "a ") + name


def get_profile(name):
    """A BoardProfile by name; ValueError with one sentence naming the valid ones."""
    if isinstance(name, BoardProfile):
        return name
    for p in _PROFILES:
        if p.name == name:
            return p
    raise ValueError("unknown board %r: choose one of %s" % (name, ", ".join(PROFILE_NAMES)))


def make_sensors(profile, simulated=True, seed=0, epoch_offset_ms=21600000, faults=None):
    """The profile's default sensors, simulated (seeded) or real drivers for that board.

    Simulated runs start at 06:00 unless ``epoch_offset_ms`` says otherwise.

    Simulated sensors of one node share one Weather, so their readings agree. Real drivers
    import ``machine`` (ESP32) or Blinka (Pi) only here.
    """
    p = get_profile(profile)
    if simulated:
        return _simulated(p, seed, epoch_offset_ms, faults)
    if p.interpreter == "micropython":
        return _esp32(p)
    return _blinka(p)


def _simulated(p, seed, epoch_offset_ms, faults):
    from roost.hardware import simulated as sim

    weather = sim.Weather(seed, epoch_offset_ms)
    out = []
    for kind in p.sensors:
        kw = {"seed": seed, "epoch_offset_ms": epoch_offset_ms, "faults": faults}
        if kind == "bme280":
            out.append(sim.SimBME280(weather=weather, **kw))
        elif kind == "dht22":
            out.append(sim.SimDHT22(weather=weather, **kw))
        elif kind == "pir":
            out.append(sim.SimPIR(**kw))
        elif kind == "battery":
            out.append(sim.SimBattery(**kw))
        elif kind == "camera":
            out.append(sim.SimBirdCamera(**kw))
    return out


def _esp32(p):
    from roost.hardware import esp32

    pins = p.pins
    out = []
    i2c = None
    for kind in p.sensors:
        if kind == "bme280":
            if i2c is None:
                i2c = esp32.default_i2c(pins["i2c_sda"], pins["i2c_scl"])
            out.append(esp32.BME280(i2c))
        elif kind == "dht22":
            import machine

            out.append(esp32.DHT22(machine.Pin(pins["dht"])))
        elif kind == "pir":
            out.append(esp32.PIR(pins["pir"]))
        elif kind == "battery":
            out.append(esp32.Battery(pins["adc"]))
        elif kind == "camera":
            out.append(esp32.CameraVisitSensor(_board_camera(), 96, 96))
    return out


def _board_camera(module=None):
    """The ESP32-CAM's capture (camera.open_capture), set up on the first frame: a firmware
    without a camera module, or a camera that fails to start, gives a sensor whose readings
    say "error" (tried again each sample), not a node that cannot boot."""
    ready = []

    def capture():
        if not ready:
            from roost.hardware.camera import open_capture

            ready.append(open_capture(module))
        return ready[0]()

    return capture


def _blinka(p, say=print):
    from roost.hardware import blinka

    out = []
    for kind in p.sensors:
        try:
            if kind == "bme280":
                out.append(blinka.BME280())
            elif kind == "dht22":
                out.append(blinka.DHT22(pin_name="D%d" % p.pins["dht"]))
            elif kind == "pir":
                out.append(blinka.PIR(pin_name="D%d" % p.pins["pir"]))
        except blinka.NoHardware as e:  # I2C not enabled, a driver missing: say so once
            hint = (" (I2C is off on a new Pi: sudo raspi-config nonint do_i2c 0, then "
                    "reboot)" if "I2C" in str(e) else "")
            say("roost: the %s is not available: %s; the node runs and its %s readings say "
                "error%s" % (kind, e, kind, hint))
            out.append(blinka.Unavailable(kind, str(e)))
    return out
