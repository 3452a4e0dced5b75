"""ESP32-CAM visit detector on synthetic grayscale frames (MicroPython-safe)."""

import binascii

from roost.hardware.camera import CameraVisitSensor, FrameDiffDetector
from roost.hardware.sensor import HEALTH_ERROR, HEALTH_OK
from roost.hardware.simdev import FrameSource

W = 32
H = 24


def _frame(level=100, block=None, block_level=220):
    """A flat frame, with an optional bright block (x, y, w, h): a bird on the perch."""
    f = bytearray(W * H)  # (bytearray * int is missing on MicroPython)
    for i in range(W * H):
        f[i] = level
    if block is not None:
        x0, y0, bw, bh = block
        for y in range(y0, y0 + bh):
            for x in range(x0, x0 + bw):
                f[y * W + x] = block_level
    return bytes(f)


def test_identical_frames_no_event():
    d = FrameDiffDetector(W, H)
    for t in range(10):
        assert d.feed(_frame(), t * 1000) is None
    assert d.stats["events"] == 0


def test_small_noise_below_threshold_no_event():
    d = FrameDiffDetector(W, H, threshold=24)
    d.feed(_frame(100), 0)
    assert d.feed(_frame(110), 1000) is None  # all pixels changed, but only by 10


def test_changed_block_one_visit_with_thumbnail():
    d = FrameDiffDetector(W, H, threshold=24, min_changed_permille=20)
    d.feed(_frame(), 0)
    ev = d.feed(_frame(block=(8, 8, 8, 8)), 1000)
    assert ev is not None
    assert ev["type"] == "visit"
    assert ev["changed_permille"] == 64 * 1000 // (W * H)
    thumb = binascii.unhexlify(ev["thumb_hex"])
    assert len(thumb) == 8 * 6 == ev["thumb_w"] * ev["thumb_h"]
    assert max(thumb) > 100  # the bright bird shows in the thumbnail
    # the bird stays: no second event; it leaves within the cooldown: still one
    assert d.feed(_frame(block=(8, 8, 8, 8)), 2000) is None
    assert d.feed(_frame(), 3000) is None
    assert d.stats["events"] == 1


def test_a_bird_that_stays_past_the_cooldown_still_counts_once():
    d = FrameDiffDetector(W, H, cooldown_ms=5000)
    d.feed(_frame(), 0)
    assert d.feed(_frame(block=(4, 4, 8, 8)), 1000) is not None
    for t in range(2, 12):  # ten seconds on the perch
        assert d.feed(_frame(block=(4, 4, 8, 8)), t * 1000) is None
    assert d.feed(_frame(), 12000) is None  # it leaves: the scene as before, not a visit
    assert d.feed(_frame(), 13000) is None
    assert d.feed(_frame(block=(20, 10, 8, 8)), 20000) is not None  # the next bird is one
    assert d.stats["events"] == 2


def test_tiny_change_below_min_fraction_no_event():
    d = FrameDiffDetector(W, H, min_changed_permille=20)
    d.feed(_frame(), 0)
    assert d.feed(_frame(block=(0, 0, 2, 2)), 1000) is None  # 4 of 768 pixels = 5 per mille


def test_second_visit_after_cooldown():
    d = FrameDiffDetector(W, H, cooldown_ms=5000)
    d.feed(_frame(), 0)
    assert d.feed(_frame(block=(4, 4, 8, 8)), 1000) is not None
    assert d.feed(_frame(), 2000) is None
    assert d.feed(_frame(), 3000) is None
    assert d.feed(_frame(block=(20, 10, 8, 8)), 9000) is not None


def test_wrong_size_frame_rejected_and_counted():
    d = FrameDiffDetector(W, H)
    assert d.feed(b"\x00" * 10, 0) is None
    assert d.stats["rx_rejected_size"] == 1


def test_camera_sensor_reading_carries_event():
    src = FrameSource([_frame(), _frame(), _frame(block=(10, 10, 10, 10))])
    s = CameraVisitSensor(src, W, H)
    assert s.read(0).values["visits"] == 0
    assert s.read(1000).event is None
    r = s.read(2000)
    assert r.health == HEALTH_OK
    assert r.values["visits"] == 1
    assert r.event["thumb_w"] == 8
    assert r.to_list()[6] is not None


def test_camera_failure_is_error_reading():
    s = CameraVisitSensor(lambda: None, W, H)
    assert s.read(0).health == HEALTH_ERROR


def test_detector_reachable_from_esp32_module():
    from roost.hardware import esp32

    assert esp32.CameraVisitSensor is CameraVisitSensor
    assert esp32.FrameDiffDetector is FrameDiffDetector
