"""The sensor interface every driver and simulated sensor follows. MicroPython-safe.

A sensor has ``name``, ``kind``, ``units`` (quantity -> unit), ``sample_period_ms`` and
``read(now_ms)`` returning a ``Reading``. ``read`` never raises for bus trouble: an
``OSError`` (or a driver's ``RuntimeError``) becomes a Reading with health "error" and no
values, and the ``stats`` counters say how often.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


HEALTH_OK = "ok"
HEALTH_STUCK = "stuck"
HEALTH_SPIKE = "spike"
HEALTH_DROPOUT = "dropout"
HEALTH_ERROR = "error"
HEALTHS = (HEALTH_OK, HEALTH_STUCK, HEALTH_SPIKE, HEALTH_DROPOUT, HEALTH_ERROR)

_WIRE_VERSION = const(1)  # first element of Reading.to_list(); grows when the shape changes


def _pairs(d):
    """dict -> list of [key, value] sorted by key (dict order differs across interpreters)."""
    if not d:
        return []
    out = []
    for k in sorted(d):
        out.append([k, d[k]])
    return out


def _unpairs(items):
    """list of [key, value] -> dict, or None if the shape is wrong."""
    if not isinstance(items, list):
        return None
    d = {}
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            return None
        d[item[0]] = item[1]
    return d


class Reading:
    """One sample of one sensor: values (quantity -> number), units, health, optional event."""

    __slots__ = ("sensor", "t_ms", "values", "units", "health", "event")

    def __init__(self, sensor, t_ms, values=None, units=None, health=HEALTH_OK, event=None):
        self.sensor = sensor
        self.t_ms = t_ms
        self.values = values if values is not None else {}
        self.units = units if units is not None else {}
        self.health = health
        self.event = event

    def to_list(self):
        """Wire form: [version, sensor, t_ms, [[q, v]..], [[q, unit]..], health, [[k, v]..]|None].

        Keys are sorted so the same reading gives the same bytes on every interpreter.
        """
        event = None if self.event is None else _pairs(self.event)
        return [
            _WIRE_VERSION,
            self.sensor,
            self.t_ms,
            _pairs(self.values),
            _pairs(self.units),
            self.health,
            event,
        ]

    @staticmethod
    def from_list(items):
        """Inverse of to_list; returns None for anything malformed (never raises)."""
        try:
            if not isinstance(items, (list, tuple)) or len(items) != 7:
                return None
            version, sensor, t_ms, values, units, health, event = items
            if version != _WIRE_VERSION or not isinstance(sensor, str):
                return None
            if not isinstance(t_ms, int) or health not in HEALTHS:
                return None
            v = _unpairs(values)
            u = _unpairs(units)
            if v is None or u is None:
                return None
            for x in v.values():
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    return None
            e = None
            if event is not None:
                e = _unpairs(event)
                if e is None:
                    return None
            return Reading(sensor, t_ms, v, u, health, e)
        except Exception:  # remote data: reject, never raise
            return None

    def ok(self):
        return self.health == HEALTH_OK

    def __eq__(self, other):
        return isinstance(other, Reading) and self.to_list() == other.to_list()

    def __repr__(self):
        return "Reading(%s t=%d %s %s)" % (self.sensor, self.t_ms, self.health, self.values)


class Sensor:
    """Base class: subclasses set kind/units and implement ``_sample(now_ms)`` -> values.

    ``_sample`` may raise OSError (bus trouble) or RuntimeError (driver-level failure such
    as a DHT checksum); ``read`` turns both into an "error" Reading.
    """

    kind = "sensor"
    units = {}
    sample_period_ms = 10000  # default cadence: one sample every 10 s

    def __init__(self, name=None, sample_period_ms=None):
        self.name = name if name is not None else self.kind
        if sample_period_ms is not None:
            if not isinstance(sample_period_ms, int) or sample_period_ms <= 0:
                raise ValueError("sample_period_ms must be a positive int")
            self.sample_period_ms = sample_period_ms
        self.stats = {"reads": 0, "errors": 0}
        self.last_error = None

    def _sample(self, now_ms):
        raise NotImplementedError

    def read(self, now_ms):
        """Take one sample at ``now_ms``; never raises for bus or device trouble."""
        self.stats["reads"] += 1
        try:
            values = self._sample(now_ms)
        except NotImplementedError:  # a subclass of RuntimeError, but a bug, not a fault
            raise
        except (OSError, RuntimeError, ValueError) as e:
            self.stats["errors"] += 1
            self.last_error = e
            return Reading(self.name, now_ms, {}, self.units, HEALTH_ERROR)
        return Reading(self.name, now_ms, values, self.units, HEALTH_OK)
