"""Bird-visit detection by frame differencing on small grayscale frames. MicroPython-safe.

Frames are ``bytes``/``bytearray`` of ``width * height`` 8-bit gray pixels (on an ESP32-CAM,
96x96 grayscale from the firmware's camera module: ``open_capture``). A pixel counts as
changed when it differs from the previous frame by more than ``threshold``; a frame is
"active" when the changed share reaches ``min_changed_permille``. A visit event fires on the
first active frame after a quiet one, not again within ``cooldown_ms``, and not when the
frame is back to the scene before the last visit (the bird leaving, however long it stayed:
a landing and a leaving count once). All integer arithmetic: the same frames give the same
events everywhere.
"""

import binascii

from roost.hardware.sensor import HEALTH_OK, Sensor


class FrameDiffDetector:
    """Feed frames with ``feed(frame, now_ms)``; returns a visit event dict or None."""

    def __init__(
        self,
        width,
        height,
        threshold=24,
        min_changed_permille=20,
        cooldown_ms=5000,
        thumb_w=8,
        thumb_h=6,
    ):
        if width <= 0 or height <= 0 or thumb_w <= 0 or thumb_h <= 0:
            raise ValueError("frame and thumbnail sizes must be positive")
        if thumb_w > width or thumb_h > height:
            raise ValueError("the thumbnail cannot be larger than the frame")
        self.width = width
        self.height = height
        self.threshold = threshold
        self.min_changed_permille = min_changed_permille
        self.cooldown_ms = cooldown_ms
        self.thumb_w = thumb_w
        self.thumb_h = thumb_h
        self._prev = None
        self._background = None  # the frame before the last visit began
        self._active = False
        self._last_event_ms = None
        self.last_changed_permille = 0
        self.stats = {"frames": 0, "events": 0, "rx_rejected_size": 0}

    def changed_permille(self, a, b):
        """Share of pixels (per mille) whose difference exceeds the threshold."""
        thr = self.threshold
        n = 0
        for i in range(len(a)):
            d = a[i] - b[i]
            if d > thr or -d > thr:
                n += 1
        return n * 1000 // len(a)

    def thumbnail(self, frame):
        """Block-average the frame down to thumb_w x thumb_h bytes."""
        w, h, tw, th = self.width, self.height, self.thumb_w, self.thumb_h
        out = bytearray(tw * th)
        for ty in range(th):
            y0 = ty * h // th
            y1 = (ty + 1) * h // th
            for tx in range(tw):
                x0 = tx * w // tw
                x1 = (tx + 1) * w // tw
                s = 0
                for y in range(y0, y1):
                    row = y * w
                    for x in range(x0, x1):
                        s += frame[row + x]
                out[ty * tw + tx] = s // ((y1 - y0) * (x1 - x0))
        return bytes(out)

    def feed(self, frame, now_ms):
        """One frame in; a visit event dict out when a visit starts, else None."""
        if not isinstance(frame, (bytes, bytearray)) or len(frame) != self.width * self.height:
            self.stats["rx_rejected_size"] += 1
            return None
        self.stats["frames"] += 1
        prev = self._prev
        self._prev = bytes(frame)
        if prev is None:
            return None
        permille = self.changed_permille(prev, frame)
        self.last_changed_permille = permille
        active = permille >= self.min_changed_permille
        starts = active and not self._active
        self._active = active
        if not starts:
            return None
        bg = self._background
        if bg is not None and self.changed_permille(bg, frame) < self.min_changed_permille:
            return None  # the scene is back as it was before the last visit: the bird left
        last = self._last_event_ms
        if last is not None and now_ms - last < self.cooldown_ms:
            return None
        self._last_event_ms = now_ms
        self._background = prev  # the scene the bird landed in
        self.stats["events"] += 1
        thumb = self.thumbnail(frame)
        return {
            "type": "visit",
            "t_ms": now_ms,
            "changed_permille": permille,
            "thumb_w": self.thumb_w,
            "thumb_h": self.thumb_h,
            "thumb_hex": binascii.hexlify(thumb).decode(),
        }


class CameraVisitSensor(Sensor):
    """A Sensor over an injected ``capture()`` callable (the board's camera or test frames)."""

    kind = "camera"
    units = {"visits": "count", "changed": "permille"}
    sample_period_ms = 1000  # one frame a second is plenty for birds at a feeder

    def __init__(self, capture, width=96, height=96, name=None, sample_period_ms=None, **opts):
        Sensor.__init__(self, name, sample_period_ms)
        self.capture = capture
        self.detector = FrameDiffDetector(width, height, **opts)
        self._event = None

    def read(self, now_ms):
        reading = Sensor.read(self, now_ms)
        if reading.health == HEALTH_OK and self._event is not None:
            reading.event = self._event
        return reading

    def _sample(self, now_ms):
        self._event = None
        frame = self.capture()
        if frame is None:
            raise OSError(5)  # the camera returned nothing: count it as a device error
        self._event = self.detector.feed(frame, now_ms)
        return {
            "visits": 1 if self._event is not None else 0,
            "changed": self.detector.last_changed_permille,
        }


# The AI-Thinker ESP32-CAM's camera wiring: D0..D7, then the control lines
_AI_THINKER_PINS = {
    "data_pins": [5, 18, 19, 21, 36, 39, 34, 35],
    "vsync_pin": 25,
    "href_pin": 23,
    "pclk_pin": 22,
    "sda_pin": 26,
    "scl_pin": 27,
    "xclk_pin": 0,
    "powerdown_pin": 32,
    "reset_pin": -1,
}


_TOLD = []  # the missing camera module was reported


def open_capture(module=None):
    """A function that returns one 96x96 grayscale frame, from whichever camera module the
    firmware carries (stock MicroPython has none: OSError ENODEV):

    * micropython-camera-API, the maintained driver (its ESP32-CAM firmwares): a ``Camera``
      object; its ``capture()`` lends the driver's frame buffer (or gives None when it has
      no frame), so the frame is copied, into one of two buffers kept for it;
    * the older micropython-camera-driver: ``camera.init(...)`` then ``camera.capture()``.
    """
    if module is None:
        try:
            import camera as module
        except ImportError:
            if not _TOLD:  # once per boot on the console; each sample then reads "error"
                _TOLD.append(1)
                print("roost: camera: this firmware has no camera module (flash a camera "
                      "firmware: docs/hardware/classroom-kit.md)")
            raise OSError(19) from None  # ENODEV
    cls = getattr(module, "Camera", None)
    if cls is not None:
        cam = cls(pixel_format=module.PixelFormat.GRAYSCALE,
                  frame_size=module.FrameSize.R96X96, **_AI_THINKER_PINS)
        return _copying(cam.capture)
    module.init(0, format=module.GRAYSCALE, framesize=module.FRAME_96X96)
    return module.capture


def _copying(capture):
    """capture() whose frames are copies, alternating between two buffers: the detector
    keeps the previous frame while the next is read, and no 9 KB block is asked for per
    frame. None (the driver had no frame) stays None."""
    bufs = [None, None]
    turn = [0]

    def copy():
        frame = capture()
        if frame is None:
            return None
        i = turn[0]
        turn[0] = 1 - i
        b = bufs[i]
        if b is None or len(b) != len(frame):
            b = bufs[i] = bytearray(len(frame))
        b[:] = frame
        return b

    return copy
