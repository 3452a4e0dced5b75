"""Simulated sensors: seeded, physically plausible, faults at their rates (MicroPython-safe)."""

from roost.hardware.sensor import HEALTHS
from roost.hardware.simulated import (
    HOUR_MS,
    FaultConfig,
    SimBattery,
    SimBirdCamera,
    SimBME280,
    SimDHT22,
    SimPIR,
    Weather,
    daily_curve,
    visit_rate_mph,
)

_MIN = 60000
_FAULTS = {"dropout_ppm": 50000, "spike_ppm": 30000, "stuck_ppm": 20000, "stuck_samples": 4}

# Fixed here so CPython and MicroPython are held to the same health states and visit counts.
_GOLDEN_DIGEST = 3239179559


def _fnv(h, x):
    return ((h ^ (x & 0xFFFFFFFF)) * 0x01000193) & 0xFFFFFFFF


def health_visit_digest(seed, n=200):
    """FNV-1a over the health states, visit counts and motion flags of a seeded run."""
    bme = SimBME280(seed=seed, faults=_FAULTS)
    cam = SimBirdCamera(seed=seed, epoch_offset_ms=5 * HOUR_MS, faults=_FAULTS)
    pir = SimPIR(seed=seed, epoch_offset_ms=5 * HOUR_MS)
    h = 0x811C9DC5
    for i in range(n):
        t = i * _MIN
        h = _fnv(h, HEALTHS.index(bme.read(t).health))
        r = cam.read(t)
        h = _fnv(h, HEALTHS.index(r.health))
        h = _fnv(h, r.values.get("visits", 0xFFFF))
        h = _fnv(h, pir.read(t).values["motion"])
    return h


def test_same_seed_same_digest_on_every_interpreter():
    assert health_visit_digest(7) == _GOLDEN_DIGEST


def test_same_seed_same_readings():
    a = SimBME280(seed=5, faults=_FAULTS)
    b = SimBME280(seed=5, faults=_FAULTS)
    for i in range(100):
        ra, rb = a.read(i * 10000), b.read(i * 10000)
        assert ra.health == rb.health
        assert ra.values == rb.values


def test_different_seed_different_readings():
    a = SimBME280(seed=1)
    b = SimBME280(seed=2)
    va = [a.read(i * 10000).values["temperature"] for i in range(20)]
    vb = [b.read(i * 10000).values["temperature"] for i in range(20)]
    assert va != vb
    assert health_visit_digest(1, 50) != health_visit_digest(2, 50)


def test_daily_curve_coldest_at_five_warmest_at_fifteen():
    assert abs(daily_curve(5.0) + 1.0) < 1e-4
    assert abs(daily_curve(15.0) - 1.0) < 1e-4
    for h in (0.0, 3.0, 8.0, 12.0, 18.0, 23.0):
        assert daily_curve(5.0) <= daily_curve(h) <= daily_curve(15.0)


def test_warmer_at_fifteen_than_at_five_with_noise():
    for seed in range(5):
        s = SimBME280(seed=seed)
        t5 = sum(s.read(5 * HOUR_MS + i * 1000).values["temperature"] for i in range(10))
        t15 = sum(s.read(15 * HOUR_MS + i * 1000).values["temperature"] for i in range(10))
        assert t15 - t5 > 10 * 8.0, (seed, t5, t15)  # swing is 12 C; noise is 0.1 C


def test_epoch_offset_shifts_the_clock():
    w = Weather(seed=3, epoch_offset_ms=10 * HOUR_MS)  # virtual 0 is 10:00
    assert abs(w.temperature(5 * HOUR_MS) - Weather(seed=3).temperature(15 * HOUR_MS)) < 1e-3


def test_humidity_anticorrelated_and_pressure_plausible():
    w = Weather(seed=4)
    assert w.humidity(5 * HOUR_MS) > w.humidity(15 * HOUR_MS) + 20
    for day in range(0, 10):
        p = w.pressure(day * 24 * HOUR_MS)
        assert 990.0 < p < 1036.0, p
    # slow: an hour moves pressure by well under 2 hPa
    assert abs(w.pressure(HOUR_MS) - w.pressure(0)) < 2.0


def test_visit_rate_rhythm():
    assert visit_rate_mph(0) == 0
    assert visit_rate_mph(2 * 60) == 0
    assert visit_rate_mph(23 * 60) == 0
    assert visit_rate_mph(390) > visit_rate_mph(12 * 60) > 0  # dawn peak above midday
    assert visit_rate_mph(1140) > visit_rate_mph(12 * 60)  # dusk peak


def test_bird_visits_none_at_night_some_at_dawn():
    cam = SimBirdCamera(seed=11, epoch_offset_ms=0)
    night = sum(cam.read(t).values["visits"] for t in range(HOUR_MS, 4 * HOUR_MS, _MIN))
    assert night == 0
    cam = SimBirdCamera(seed=11, epoch_offset_ms=0)
    dawn = 0
    events = 0
    for t in range(6 * HOUR_MS, 7 * HOUR_MS, _MIN):
        r = cam.read(t)
        dawn += r.values["visits"]
        events += 1 if r.event is not None else 0
    assert 10 < dawn < 60, dawn  # about 28 expected in the dawn hour
    assert events > 0


def test_pir_quiet_at_night_busy_at_dawn():
    pir = SimPIR(seed=2, epoch_offset_ms=0)
    night = sum(pir.read(2 * HOUR_MS + i * 500).values["motion"] for i in range(600))
    dawn = sum(pir.read(int(6.5 * HOUR_MS) + i * 500).values["motion"] for i in range(600))
    assert night < 5
    assert dawn > night + 40


def test_faults_at_configured_rates_and_labelled():
    n = 4000
    s = SimDHT22(seed=9, faults=_FAULTS)
    counts = {}
    episodes = 0
    prev = "ok"
    for i in range(n):
        r = s.read(i * 10000)
        counts[r.health] = counts.get(r.health, 0) + 1
        if r.health == "dropout":
            assert r.values == {}
        elif r.health == "spike":
            assert abs(r.values["temperature"] - s.weather.temperature(i * 10000)) > 30 or (
                abs(r.values["humidity"] - s.weather.humidity(i * 10000)) > 30
            )
        if r.health == "stuck" and prev != "stuck":
            episodes += 1
        prev = r.health
    assert 0.6 * 0.05 * n < counts["dropout"] < 1.4 * 0.05 * n, counts
    assert 0.6 * 0.03 * n < counts["spike"] < 1.4 * 0.03 * n, counts
    assert 0.5 * 0.02 * n < episodes < 1.5 * 0.02 * n, episodes
    assert counts["ok"] > 0.7 * n


def test_stuck_repeats_last_good_values():
    s = SimBME280(seed=3, faults={"stuck_ppm": 200000, "stuck_samples": 3})
    last_good = None
    seen = 0
    for i in range(200):
        r = s.read(i * 10000)
        if r.health == "ok":
            last_good = r.values
        elif r.health == "stuck":
            assert r.values == last_good
            seen += 1
    assert seen > 10


def test_no_faults_by_default():
    s = SimBME280(seed=1)
    assert all(s.read(i * 1000).health == "ok" for i in range(500))


def test_fault_config_validation():
    for bad in ({"nope": 1}, {"spike_ppm": -1}, {"spike_ppm": 1.5}, {"stuck_samples": 0}):
        try:
            FaultConfig(**bad)
        except ValueError:
            continue
        raise AssertionError("accepted " + repr(bad))
    try:
        FaultConfig(dropout_ppm=600000, spike_ppm=600000)
    except ValueError:
        pass
    else:
        raise AssertionError("rates above one accepted")


def test_battery_drains_slowly():
    b = SimBattery(seed=1, drain_mv_per_day=60)
    v0 = b.read(0).values["voltage"]
    v10 = b.read(10 * 24 * HOUR_MS).values["voltage"]
    assert 4.13 < v0 < 4.17
    assert abs((v0 - v10) - 0.6) < 0.015
    assert b.read(1000 * 24 * HOUR_MS).values["percent"] == 0
