"""Simulated sensors with seeded physical models and seeded faults. MicroPython-safe.

Every random choice comes from integer draws of ``roost.common.prng.Prng``, so the same
seed gives the same health states, visit counts and motion flags on CPython and MicroPython;
physical values are floats (single precision on an ESP32), compare them with a tolerance.
Time of day is ``(now_ms + epoch_offset_ms) mod 24 h``: a run at virtual time 0 with
``epoch_offset_ms=6 * HOUR_MS`` starts at 06:00.

Models: ``Weather`` (daily temperature curve, coldest about 05:00 and warmest about 15:00;
humidity falling as temperature rises; pressure drifting over days), ``visit_rate_mph``
(bird visits per hour x1000: dawn and dusk peaks, a small daytime rate, none at night),
battery drain. Faults (``FaultConfig``): stuck values, spikes, dropouts and bus errors,
each labelled in the Reading's health.
"""

import math

from roost.common.prng import Prng
from roost.hardware.sensor import (
    HEALTH_DROPOUT,
    HEALTH_ERROR,
    HEALTH_OK,
    HEALTH_SPIKE,
    HEALTH_STUCK,
    Reading,
    Sensor,
)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


HOUR_MS = const(3600000)
DAY_MS = const(86400000)
_PPM = const(1000000)
_PI = 3.141592653589793


class FaultConfig:
    """Per-reading fault probabilities in parts per million (integers: same on every VM)."""

    dropout_ppm = 0  # a reading with no values (a missed I2C transaction, a DHT timeout)
    spike_ppm = 0  # one wild value (electrical noise on the line)
    stuck_ppm = 0  # chance that a stuck episode starts: values freeze at the last good ones
    stuck_samples = 5  # readings a stuck episode lasts
    error_ppm = 0  # the driver reports a bus error (health "error", no values)

    def __init__(self, **overrides):
        for name in sorted(overrides):
            if not hasattr(FaultConfig, name) or name.startswith("_"):
                raise ValueError("unknown fault option: " + name)
            value = overrides[name]
            if not isinstance(value, int) or value < 0:
                raise ValueError(name + " must be a non-negative int")
            setattr(self, name, value)
        total = self.dropout_ppm + self.spike_ppm + self.stuck_ppm + self.error_ppm
        if total > _PPM:
            raise ValueError("fault rates add up to more than 1000000 ppm")
        if self.stuck_samples < 1:
            raise ValueError("stuck_samples must be at least 1")


def _faults(faults):
    if faults is None:
        return FaultConfig()
    if isinstance(faults, dict):
        return FaultConfig(**faults)
    return faults


def gauss_ish(rng):
    """About N(0, 1) from four integer draws (Irwin-Hall), range +-3.5."""
    s = rng.randbelow(2001) + rng.randbelow(2001) + rng.randbelow(2001) + rng.randbelow(2001)
    return (s - 4000) / 1155.0


def hour_of_day(now_ms, epoch_offset_ms=0):
    """Float hour in [0, 24) for a virtual time."""
    return ((now_ms + epoch_offset_ms) % DAY_MS) / HOUR_MS


def daily_curve(hour):
    """-1 at 05:00, +1 at 15:00: a half cosine up over 10 h and down over 14 h."""
    if 5.0 <= hour < 15.0:
        return -math.cos(_PI * (hour - 5.0) / 10.0)
    since = (hour - 15.0) % 24.0
    return math.cos(_PI * since / 14.0)


def visit_rate_mph(minute):
    """Bird visits per hour x1000 at a minute of the day (integer maths).

    Nothing from 21:00 to 05:00; 4/h by day; a dawn chorus peak of +26/h at 06:30 and a dusk
    peak of +16/h at 19:00, each a 3-hour triangle.
    """
    minute = minute % 1440
    if minute < 300 or minute >= 1260:
        return 0
    rate = 4000
    d = 90 - abs(minute - 390)
    if d > 0:
        rate += d * 26000 // 90
    d = 90 - abs(minute - 1140)
    if d > 0:
        rate += d * 16000 // 90
    return rate


class Weather:
    """A birdhouse's weather: deterministic curves plus seeded slow drift (no noise here).

    Share one Weather between the sensors of a node so they see the same air.
    """

    def __init__(
        self,
        seed=0,
        epoch_offset_ms=0,
        mean_c=12.0,
        swing_c=6.0,
        humidity_mean=70.0,
        humidity_per_c=3.5,
        pressure_hpa=1013.25,
    ):
        rng = Prng(seed).fork("weather")
        self.epoch_offset_ms = epoch_offset_ms
        self.mean_c = mean_c
        self.swing_c = swing_c
        self.humidity_mean = humidity_mean
        self.humidity_per_c = humidity_per_c
        self.pressure_hpa = pressure_hpa
        # two slow pressure waves (about 3 days and 17 h) with seeded phases and sizes
        self._p_phase1 = rng.randbelow(3600) * _PI / 1800.0
        self._p_phase2 = rng.randbelow(3600) * _PI / 1800.0
        self._p_amp1 = 4.0 + rng.randbelow(800) / 100.0
        self._p_amp2 = 0.5 + rng.randbelow(150) / 100.0
        self._day_offset = (rng.randbelow(401) - 200) / 100.0  # this place's +-2 C

    def temperature(self, now_ms):
        h = hour_of_day(now_ms, self.epoch_offset_ms)
        return self.mean_c + self._day_offset + self.swing_c * daily_curve(h)

    def humidity(self, now_ms, temperature=None):
        t = self.temperature(now_ms) if temperature is None else temperature
        rh = self.humidity_mean - self.humidity_per_c * (t - self.mean_c - self._day_offset)
        return 0.0 if rh < 0.0 else (100.0 if rh > 100.0 else rh)

    def pressure(self, now_ms):
        days = (now_ms + self.epoch_offset_ms) / DAY_MS
        return (
            self.pressure_hpa
            + self._p_amp1 * math.sin(2 * _PI * days / 3.1 + self._p_phase1)
            + self._p_amp2 * math.sin(2 * _PI * days / 0.71 + self._p_phase2)
        )


class SimSensor(Sensor):
    """Base of simulated sensors: a model (``_model``) plus seeded fault injection.

    Streams: ``_rng_model`` for noise and events, ``_rng_faults`` for faults, both forked
    from the seed and the sensor name, so adding a sensor does not shift another's stream.
    """

    spike_sizes = {}

    def __init__(self, name=None, seed=0, epoch_offset_ms=0, faults=None, sample_period_ms=None):
        Sensor.__init__(self, name, sample_period_ms)
        self.seed = seed
        self.epoch_offset_ms = epoch_offset_ms
        self.faults = _faults(faults)
        base = Prng(seed).fork(self.name)
        self._rng_model = base.fork("model")
        self._rng_faults = base.fork("faults")
        self._last_good = None
        self._stuck_left = 0
        self.stats["faults"] = 0

    def _model(self, now_ms):
        raise NotImplementedError

    def _spike(self, values):
        rng = self._rng_faults
        out = {}
        for q in sorted(values):
            size = self.spike_sizes.get(q, 100)
            sign = 1 if rng.getrandbits(1) else -1
            out[q] = values[q] + sign * size * (1 + rng.randbelow(3))
        return out

    def read(self, now_ms):
        """Model first (a fixed number of draws), then the fault draws, then the verdict."""
        self.stats["reads"] += 1
        values = self._model(now_ms)
        f, rng = self.faults, self._rng_faults
        roll = rng.randbelow(_PPM)  # one draw picks at most one new fault
        health = HEALTH_OK
        if self._stuck_left > 0:
            self._stuck_left -= 1
            health = HEALTH_STUCK
        elif roll < f.error_ppm:
            health = HEALTH_ERROR
        elif roll < f.error_ppm + f.dropout_ppm:
            health = HEALTH_DROPOUT
        elif roll < f.error_ppm + f.dropout_ppm + f.spike_ppm:
            health = HEALTH_SPIKE
        elif roll < f.error_ppm + f.dropout_ppm + f.spike_ppm + f.stuck_ppm:
            if self._last_good is not None:
                health = HEALTH_STUCK
                self._stuck_left = f.stuck_samples - 1
        event = None
        if health == HEALTH_OK:
            self._last_good = values
            event = self._event(now_ms, values)
        elif health == HEALTH_STUCK:
            values = dict(self._last_good)
        elif health == HEALTH_SPIKE:
            values = self._spike(values)
        else:
            values = {}
        if health != HEALTH_OK:
            self.stats["faults"] += 1
            if health == HEALTH_ERROR:
                self.stats["errors"] += 1
        return Reading(self.name, now_ms, values, self.units, health, event)

    def _event(self, now_ms, values):
        return None


class SimBME280(SimSensor):
    kind = "bme280"
    units = {"temperature": "C", "humidity": "%", "pressure": "hPa"}
    sample_period_ms = 10000
    spike_sizes = {"temperature": 40.0, "humidity": 40.0, "pressure": 150.0}
    noise = {"temperature": 0.1, "humidity": 0.8, "pressure": 0.05}  # sd, datasheet-ish

    def __init__(self, weather=None, **kw):
        SimSensor.__init__(self, **kw)
        self.weather = weather or Weather(self.seed, self.epoch_offset_ms)

    def _model(self, now_ms):
        w, rng, n = self.weather, self._rng_model, self.noise
        t = w.temperature(now_ms)
        h = w.humidity(now_ms, t)
        p = w.pressure(now_ms)
        h += n["humidity"] * gauss_ish(rng)
        h = 0.0 if h < 0.0 else (100.0 if h > 100.0 else h)
        return {
            "temperature": t + n["temperature"] * gauss_ish(rng),
            "humidity": h,
            "pressure": p + n["pressure"] * gauss_ish(rng),
        }


class SimDHT22(SimSensor):
    kind = "dht22"
    units = {"temperature": "C", "humidity": "%"}
    sample_period_ms = 10000
    spike_sizes = {"temperature": 40.0, "humidity": 40.0}
    noise = {"temperature": 0.2, "humidity": 1.5}

    def __init__(self, weather=None, **kw):
        SimSensor.__init__(self, **kw)
        self.weather = weather or Weather(self.seed, self.epoch_offset_ms)

    def _model(self, now_ms):
        w, rng, n = self.weather, self._rng_model, self.noise
        t = w.temperature(now_ms)
        h = w.humidity(now_ms, t) + n["humidity"] * gauss_ish(rng)
        h = 0.0 if h < 0.0 else (100.0 if h > 100.0 else h)
        t += n["temperature"] * gauss_ish(rng)
        # the DHT22 reports tenths
        return {"temperature": round(t * 10) / 10, "humidity": round(h * 10) / 10}


def _visits_between(rng, start_ms, end_ms, epoch_offset_ms):
    """Visits in [start, end): one Bernoulli draw per whole second at the hour's rate."""
    n = 0
    t = start_ms
    rate = 0
    minute = -1
    while t < end_ms:
        m = ((t + epoch_offset_ms) % DAY_MS) // 60000
        if m != minute:
            minute = m
            rate = visit_rate_mph(m)
        if rate and rng.chance(rate, 3600000):
            n += 1
        t += 1000
    return n


class SimBirdCamera(SimSensor):
    """Counts bird visits since the last reading (a Poisson-like process, one draw a second).

    A reading with visits carries an event like the camera detector's, with a seeded 8x6
    thumbnail, so consumers handle simulated and real events alike.
    """

    kind = "camera"
    units = {"visits": "count", "changed": "permille"}
    sample_period_ms = 60000
    spike_sizes = {"visits": 40, "changed": 500}
    max_window_ms = HOUR_MS  # after a long gap, count at most the last hour

    def __init__(self, **kw):
        SimSensor.__init__(self, **kw)
        self._last_ms = None

    def _model(self, now_ms):
        start = now_ms - self.sample_period_ms if self._last_ms is None else self._last_ms
        if now_ms - start > self.max_window_ms:
            start = now_ms - self.max_window_ms
        self._last_ms = now_ms
        n = _visits_between(self._rng_model, start, now_ms, self.epoch_offset_ms)
        changed = 0
        if n:
            changed = 40 + self._rng_model.randbelow(200)
        return {"visits": n, "changed": changed}

    def _event(self, now_ms, values):
        if not values["visits"]:
            return None
        rng = self._rng_model
        thumb = bytearray(48)
        for i in range(48):
            thumb[i] = rng.getrandbits(8)
        return {
            "type": "visit",
            "t_ms": now_ms,
            "count": values["visits"],
            "changed_permille": values["changed"],
            "thumb_w": 8,
            "thumb_h": 6,
            "thumb_hex": "".join("%02x" % b for b in thumb),
        }


class SimPIR(SimSensor):
    """Motion while a bird is at the box (its share of time follows the visit rhythm)."""

    kind = "pir"
    units = {"motion": "bool"}
    sample_period_ms = 500
    spike_sizes = {"motion": 1}
    dwell_s = 20  # a visiting bird stays about this long
    false_trigger_ppm = 200  # warm gusts and sunlight on the lens

    def _model(self, now_ms):
        m = ((now_ms + self.epoch_offset_ms) % DAY_MS) // 60000
        p = visit_rate_mph(m) * self.dwell_s  # x1000 visits/h * s = ppm-ish of an hour
        rng = self._rng_model
        motion = rng.chance(p, 3600000) or rng.chance(self.false_trigger_ppm, _PPM)
        return {"motion": 1 if motion else 0}

    def _spike(self, values):
        return {"motion": 1 - values["motion"]}


class SimBattery(SimSensor):
    """A LiPo cell draining linearly with virtual time, in integer millivolts."""

    kind = "battery"
    units = {"voltage": "V", "percent": "%"}
    sample_period_ms = 60000
    spike_sizes = {"voltage": 2.0, "percent": 0}

    def __init__(self, full_mv=4150, empty_mv=3300, drain_mv_per_day=60, **kw):
        SimSensor.__init__(self, **kw)
        if full_mv <= empty_mv or drain_mv_per_day < 0:
            raise ValueError("full_mv must exceed empty_mv and drain_mv_per_day be >= 0")
        self.full_mv = full_mv
        self.empty_mv = empty_mv
        self.drain_mv_per_day = drain_mv_per_day

    def millivolts(self, now_ms):
        mv = self.full_mv - now_ms * self.drain_mv_per_day // DAY_MS
        return self.empty_mv if mv < self.empty_mv else mv

    def _model(self, now_ms):
        mv = self.millivolts(now_ms) + self._rng_model.randbelow(11) - 5  # +-5 mV ADC noise
        pct = (mv - self.empty_mv) * 100 // (self.full_mv - self.empty_mv)
        pct = 0 if pct < 0 else (100 if pct > 100 else pct)
        return {"voltage": mv / 1000, "percent": pct}
