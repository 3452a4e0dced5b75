"""Simulated ``camera`` for a virtual ESP32-CAM (``roost board serve --board esp32-cam``).

The shape of micropython-camera-API, the module of the ESP32-CAM firmwares roost expects: a
``Camera`` class whose ``capture()`` lends one frame buffer that the next capture
overwrites. Frames are 96x96 grayscale: a still scene (a gradient with a little sensor
noise) where a bird, a dark 20x20 blob, lands now and then (seeded, about one visit a
minute at a frame a second) and stays a few frames. Any other virtual board has no camera
module, as stock MicroPython has none.
"""

import os

if not (os.getenv("ROOST_VBOARD_ID") or "").startswith("esp32-cam:"):
    raise ImportError("no module named 'camera'")


class PixelFormat:
    RGB565 = 0
    GRAYSCALE = 3
    JPEG = 4


class FrameSize:
    R96X96 = 0
    QVGA = 6


class Camera:
    def __init__(self, *, data_pins=None, pclk_pin=None, vsync_pin=None, href_pin=None,
                 sda_pin=None, scl_pin=None, xclk_pin=None, xclk_freq=20000000,
                 powerdown_pin=-1, reset_pin=-1, i2c=None, pixel_format=PixelFormat.RGB565,
                 frame_size=FrameSize.QVGA, jpeg_quality=85, fb_count=1, grab_mode=0,
                 init=True):
        if pixel_format != PixelFormat.GRAYSCALE or frame_size != FrameSize.R96X96:
            raise ValueError("the virtual camera gives 96x96 grayscale frames only")
        self._buf = bytearray(96 * 96)
        self._seed = 12345
        self._bird = 0  # frames the current visitor stays
        self._at = 0

    def _rand(self, n):
        self._seed = (self._seed * 1103515245 + 12345) & 0x7FFFFFFF
        return self._seed % n

    def capture(self):
        if self._bird == 0 and self._rand(60) == 0:
            self._bird = 3 + self._rand(5)
            self._at = self._rand(76) * 96 + self._rand(76)
        b = self._buf
        for y in range(96):
            row = y * 96
            for x in range(96):
                b[row + x] = 80 + x + self._rand(5)
        if self._bird:
            self._bird -= 1
            for y in range(20):
                for x in range(20):
                    b[self._at + y * 96 + x] = 20
        return memoryview(b)

    def deinit(self):
        pass
