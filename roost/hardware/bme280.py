"""BME280 calibration parsing and the Bosch integer compensation formulas. MicroPython-safe.

Shared by the ESP32 driver (``esp32.py``) and the register-level simulator (``simdev.py``),
which inverts these same formulas to turn physical values into raw ADC registers.
The formulas are the datasheet's integer ones (BST-BME280-DS002, section 4.2.3): temperature
in 0.01 degC, pressure in Q24.8 Pa (64-bit path), humidity in Q22.10 %RH.
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


CHIP_ID = const(0x60)
ADDRESSES = (0x77, 0x76)  # SDO high (Adafruit's breakout) and SDO low (most cheap ones)
REG_CALIB_TP = const(0x88)  # dig_T1..dig_P9, 24 bytes little-endian
REG_CALIB_H1 = const(0xA1)
REG_CHIP_ID = const(0xD0)
REG_RESET = const(0xE0)
REG_CALIB_H = const(0xE1)  # dig_H2..dig_H6, 7 bytes packed
REG_CTRL_HUM = const(0xF2)
REG_STATUS = const(0xF3)
REG_CTRL_MEAS = const(0xF4)
REG_CONFIG = const(0xF5)
REG_DATA = const(0xF7)  # press msb..hum lsb, 8 bytes
RESET_WORD = const(0xB6)

# Calibration names in register order; values as the driver stores them.
CALIB_NAMES = (
    "T1", "T2", "T3",
    "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9",
    "H1", "H2", "H3", "H4", "H5", "H6",
)  # fmt: skip

# Typical trimming values: T and P are the example values Bosch prints for the BMP280/BME280
# compensation code; H are values read from a production BME280 breakout.
TYPICAL_CALIB = {
    "T1": 27504, "T2": 26435, "T3": -1000,
    "P1": 36477, "P2": -10685, "P3": 3024, "P4": 2855, "P5": 140, "P6": -7,
    "P7": 15500, "P8": -14600, "P9": 6000,
    "H1": 75, "H2": 362, "H3": 0, "H4": 313, "H5": 50, "H6": 30,
}  # fmt: skip


def parse_calib(tp, h1, h):
    """Raw calibration bytes (24 from 0x88, 1 from 0xA1, 7 from 0xE1) -> dict of ints."""
    vals = struct.unpack("<HhhHhhhhhhhh", bytes(tp))
    c = {}
    for i in range(12):
        c[CALIB_NAMES[i]] = vals[i]
    c["H1"] = h1 if isinstance(h1, int) else h1[0]
    h2, h3, e4, e5, e6, h6 = struct.unpack("<hBbBbb", bytes(h))
    c["H2"] = h2
    c["H3"] = h3
    c["H4"] = (e4 << 4) | (e5 & 0x0F)
    c["H5"] = (e6 << 4) | (e5 >> 4)
    c["H6"] = h6
    return c


def pack_calib(c):
    """dict of ints -> (24 bytes for 0x88, 1 byte for 0xA1, 7 bytes for 0xE1)."""
    tp = struct.pack(
        "<HhhHhhhhhhhh",
        c["T1"], c["T2"], c["T3"], c["P1"], c["P2"], c["P3"],
        c["P4"], c["P5"], c["P6"], c["P7"], c["P8"], c["P9"],
    )  # fmt: skip
    h4 = c["H4"]
    h5 = c["H5"]
    e4 = (h4 >> 4) & 0xFF
    e5 = (h4 & 0x0F) | ((h5 & 0x0F) << 4)
    e6 = (h5 >> 4) & 0xFF
    h = struct.pack("<hBBBBB", c["H2"], c["H3"], e4, e5, e6, c["H6"] & 0xFF)
    return tp, bytes((c["H1"],)), h


def _cdiv(a, b):
    """C integer division (truncates toward zero), unlike Python's floor division."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def t_fine(c, adc_t):
    """adc_T (20 bit) -> t_fine, the fine temperature the other formulas need."""
    var1 = (((adc_t >> 3) - (c["T1"] << 1)) * c["T2"]) >> 11
    d = (adc_t >> 4) - c["T1"]
    var2 = (((d * d) >> 12) * c["T3"]) >> 14
    return var1 + var2


def temperature_centi(tf):
    """t_fine -> temperature in 0.01 degC."""
    return (tf * 5 + 128) >> 8


def pressure_q24_8(c, tf, adc_p):
    """(t_fine, adc_P) -> pressure in Pa as Q24.8 (divide by 256), 0 if calibration is bad."""
    var1 = tf - 128000
    var2 = var1 * var1 * c["P6"]
    var2 = var2 + ((var1 * c["P5"]) << 17)
    var2 = var2 + (c["P4"] << 35)
    var1 = ((var1 * var1 * c["P3"]) >> 8) + ((var1 * c["P2"]) << 12)
    var1 = (((1 << 47) + var1) * c["P1"]) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _cdiv(((p << 31) - var2) * 3125, var1)
    var1 = (c["P9"] * (p >> 13) * (p >> 13)) >> 25
    var2 = (c["P8"] * p) >> 19
    return ((p + var1 + var2) >> 8) + (c["P7"] << 4)


def humidity_q22_10(c, tf, adc_h):
    """(t_fine, adc_H) -> relative humidity in %RH as Q22.10 (divide by 1024)."""
    v = tf - 76800
    a = ((adc_h << 14) - (c["H4"] << 20) - (c["H5"] * v) + 16384) >> 15
    b = (((v * c["H6"]) >> 10) * (((v * c["H3"]) >> 11) + 32768)) >> 10
    b = ((b + 2097152) * c["H2"] + 8192) >> 14
    v = a * b
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * c["H1"]) >> 4)
    if v < 0:
        v = 0
    if v > 419430400:
        v = 419430400
    return v >> 12


def compensate(c, adc_t, adc_p, adc_h):
    """Raw ADC values -> (degC, hPa, %RH) as floats, through the integer formulas."""
    tf = t_fine(c, adc_t)
    t = temperature_centi(tf) / 100.0
    p = pressure_q24_8(c, tf, adc_p) / 25600.0
    h = humidity_q22_10(c, tf, adc_h) / 1024.0
    return t, p, h


def split_data(buf):
    """8 data bytes from 0xF7 -> (adc_T, adc_P, adc_H)."""
    adc_p = (buf[0] << 12) | (buf[1] << 4) | (buf[2] >> 4)
    adc_t = (buf[3] << 12) | (buf[4] << 4) | (buf[5] >> 4)
    adc_h = (buf[6] << 8) | buf[7]
    return adc_t, adc_p, adc_h


def join_data(adc_t, adc_p, adc_h):
    """(adc_T, adc_P, adc_H) -> the 8 data bytes at 0xF7 (inverse of split_data)."""
    return bytes(
        (
            (adc_p >> 12) & 0xFF, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
            (adc_t >> 12) & 0xFF, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
            (adc_h >> 8) & 0xFF, adc_h & 0xFF,
        )
    )  # fmt: skip


def _search(f, target, lo, hi, increasing):
    """Smallest-error integer x in [lo, hi] with f(x) near target, f monotonic."""
    while lo < hi:
        mid = (lo + hi) // 2
        v = f(mid)
        if (v < target) if increasing else (v > target):
            lo = mid + 1
        else:
            hi = mid
    best = lo
    if lo > 0 and abs(f(lo - 1) - target) < abs(f(lo) - target):
        best = lo - 1
    return best


def invert(c, temperature_c, pressure_hpa, humidity_rh):
    """Physical values -> raw (adc_T, adc_P, adc_H) that compensate back to them."""
    t_target = int(round(temperature_c * 100))
    adc_t = _search(lambda x: temperature_centi(t_fine(c, x)), t_target, 0, 0xFFFFF, True)
    tf = t_fine(c, adc_t)
    p_target = int(round(pressure_hpa * 25600))
    adc_p = _search(lambda x: pressure_q24_8(c, tf, x), p_target, 0, 0xFFFFF, False)
    h_target = int(round(humidity_rh * 1024))
    adc_h = _search(lambda x: humidity_q22_10(c, tf, x), h_target, 0, 0xFFFF, True)
    return adc_t, adc_p, adc_h
