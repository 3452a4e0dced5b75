"""``roost ports``: serial ports with a guess of the board behind each. CPython-only."""

import argparse
import json

# USB vendor:product ids of the bridges and native USB ports boards come with.
KNOWN_USB = {
    (0x10C4, 0xEA60): "ESP32 devkit (Silicon Labs CP210x USB-UART)",
    (0x1A86, 0x7523): "ESP32 devkit or ESP32-CAM-MB (WCH CH340 USB-UART)",
    (0x1A86, 0x55D4): "ESP32 devkit (WCH CH9102 USB-UART)",
    (0x1A86, 0x55D3): "ESP32-S3 devkit (WCH CH343 USB-UART)",
    (0x0403, 0x6001): "USB-serial adapter (FTDI FT232R), e.g. an ESP32-CAM programmer",
    (0x0403, 0x6010): "ESP-WROVER-KIT (FTDI FT2232)",
    (0x0403, 0x6015): "USB-serial adapter (FTDI FT231X)",
    (0x303A, 0x1001): "ESP32-S3/C3 native USB (USB-Serial/JTAG)",
    (0x303A, 0x4001): "ESP32-S2/S3 native USB running MicroPython",
    (0x303A, 0x0002): "ESP32-S2 native USB (ROM bootloader)",
    (0x2E8A, 0x0005): "Raspberry Pi Pico running MicroPython",
}


def guess_board(vid: int | None, pid: int | None) -> str:
    if vid is None or pid is None:
        return "no USB ids (built-in UART or a virtual port)"
    if (vid, pid) in KNOWN_USB:
        return KNOWN_USB[(vid, pid)]
    if vid == 0x303A:
        return "an Espressif chip's native USB"
    return "unknown device"


def list_ports() -> list[dict]:
    """Every serial port pyserial sees, sorted by device name."""
    try:
        from serial.tools import list_ports as lp
    except ImportError:
        raise ValueError("pyserial is not installed: pip install pyserial") from None
    out = []
    for p in sorted(lp.comports(), key=lambda p: p.device):
        out.append({
            "device": p.device,
            "vid": "%04x" % p.vid if p.vid is not None else None,
            "pid": "%04x" % p.pid if p.pid is not None else None,
            "serial_number": p.serial_number,
            "description": p.description,
            "board": guess_board(p.vid, p.pid),
        })
    return out


def _cmd_ports(args: argparse.Namespace) -> int:
    ports = list_ports()
    if args.all is False:
        ports = [p for p in ports if p["vid"] is not None]
    if args.json:
        print(json.dumps(ports, sort_keys=True))
        return 0
    if not ports:
        print("roost ports: no USB serial ports found (is the board plugged in with a data "
              "cable? a virtual board is socket://127.0.0.1:PORT)")
        return 0
    for p in ports:
        ids = "%s:%s" % (p["vid"], p["pid"]) if p["vid"] else "-"
        print("%-20s %-10s %s  [%s]" % (p["device"], ids, p["board"], p["description"]))
    return 0


def add_ports_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ports",
        help="list serial ports and guess the board on each (pyserial)",
        description="List serial ports with their USB vendor:product ids and a guess of the "
        "board from its USB bridge (CP210x, CH340, FTDI, ESP32-S3 native USB, ...).",
    )
    p.add_argument("--all", action="store_true", help="also ports without USB ids")
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(handler=_cmd_ports)
    return p
